"""model.conv = "auto": the formulation follows the platform, is printed, and is recorded."""

import json

import ml_collections
import pytest

from jaxgan import hardware, state
from jaxgan.configs import default


@pytest.mark.parametrize("backend", ["gpu", "tpu", "cuda", "rocm"])
def test_auto_takes_the_plain_convolutions_on_accelerators(backend):
    choice, why = hardware.choose_conv("dcgan64", backend=backend, cpu="AMD EPYC 9R14")
    assert choice == "lax" and backend in why


def test_auto_on_cpu_follows_the_measurements_of_the_cpu_found(monkeypatch):
    monkeypatch.setattr(
        hardware, "_CPU_MEASUREMENTS", {"Made Up CPU": {"dcgan28": 1.5, "dcgan64": 0.8}}
    )
    assert hardware.choose_conv("dcgan28", "cpu", "Made Up CPU 9000")[0] == "fast"
    choice, why = hardware.choose_conv("dcgan64", "cpu", "Made Up CPU 9000")
    assert choice == "lax" and "0.80" in why and "Made Up CPU 9000" in why
    # a network not measured there, and a CPU never measured: the CPU-tuned ones
    assert hardware.choose_conv("sngan48", "cpu", "Made Up CPU 9000")[0] == "fast"
    choice, why = hardware.choose_conv("dcgan64", "cpu", "Other CPU")
    assert choice == "fast" and "not measured" in why


def test_every_recorded_measurement_names_a_network_and_a_ratio():
    from jaxgan import models

    assert hardware._CPU_MEASUREMENTS, "no CPU measurement recorded for model.conv=auto"
    for cpu, ratios in hardware._CPU_MEASUREMENTS.items():
        assert cpu and ratios
        for name, ratio in ratios.items():
            assert name in models.CONV_MODELS and ratio > 0, (cpu, name, ratio)


def test_the_default_config_builds_with_this_platforms_choice():
    config = default.get_config()
    config.model.name = "dcgan28"
    assert config.model.conv == "auto"
    gan = state.build_gan(config, (28, 28, 1))
    expected = hardware.choose_conv("dcgan28")[0]
    assert gan.models.generator.conv == expected == gan.models.discriminator.conv
    assert state.conv_of(config) == expected
    config.model.conv = "lax"
    assert state.build_gan(config, (28, 28, 1)).models.generator.conv == "lax"


def test_an_unknown_formulation_is_refused_naming_the_choices():
    from jaxgan import trainer
    from jaxgan.errors import ConfigError

    config = default.get_config()
    config.model.conv = "cudnn"
    with pytest.raises(ConfigError, match=r"config\.model\.conv 'cudnn'.*'auto', 'fast', 'lax'"):
        trainer.validate_config(config)


def _dcgan28(num_steps):
    config = default.get_config()
    config.model.name = "dcgan28"
    config.data.name = "mnist"
    config.batch_size, config.num_steps = 4, num_steps
    config.log_every = config.eval_every = config.ckpt_every = 2
    config.eval_metrics = False
    config.num_eval_samples = 16
    return ml_collections.ConfigDict(config.to_dict())


@pytest.mark.slow
def test_the_choice_is_printed_recorded_and_kept_on_resume(tmp_path, monkeypatch):
    """A run started where auto means lax (an accelerator, faked) records lax; resumed
    with auto on this CPU it keeps lax, says so, and continues."""
    import tensorflow_datasets as tfds

    from jaxgan import trainer

    workdir = str(tmp_path / "w")
    monkeypatch.setattr(hardware, "choose_conv", lambda model: ("lax", "gpu: faked"))
    logs = []
    with tfds.testing.mock_data(num_examples=16):
        assert trainer.train_and_evaluate(_dcgan28(2), workdir, log=logs.append) == 0
    assert "model.conv: auto -> lax (gpu: faked;" in "\n".join(logs)
    saved = json.load(open(tmp_path / "w" / "config.json"))
    assert saved["config"]["model"]["conv"] == "lax"

    monkeypatch.undo()
    logs = []
    with tfds.testing.mock_data(num_examples=16):
        assert trainer.train_and_evaluate(_dcgan28(4), workdir, log=logs.append) == 0
    text = "\n".join(logs)
    assert "model.conv: auto -> lax (the formulation this run was trained with" in text
    assert "Resuming" in text
    assert json.load(open(tmp_path / "w" / "config.json"))["config"]["model"]["conv"] == "lax"


# ------------------------------------------------------------ the persistent compilation cache


def _train(args, cwd, extra_env=()):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": root, **dict(extra_env)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.run([sys.executable, os.path.join(root, "train.py"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_a_run_from_the_compilation_cache_is_the_same_run(tmp_path):
    """The first run compiles and writes the cache; the second compiles nothing (JAX
    reports every persistent-cache miss) and its metrics equal the first's bit for bit."""
    env = {
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # toy2d's programs compile fast
        "JAX_EXPLAIN_CACHE_MISSES": "1",
    }
    common = ["--config.num_steps=20", "--config.log_every=5", "--config.eval_every=20",
              "--config.ckpt_every=20", "--config.num_eval_samples=500",
              f"--compilation_cache={tmp_path / 'cache'}"]  # fmt: skip
    runs, misses = {}, {}
    for name in ("cold", "warm"):
        proc = _train([*common, f"--workdir={tmp_path / name}"], tmp_path, env)
        assert proc.returncode == 0, proc.stderr
        misses[name] = proc.stderr.count("PERSISTENT COMPILATION CACHE MISS")
        runs[name] = [
            {k: v for k, v in json.loads(line).items() if k not in ("time", "steps_per_s")}
            for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        ]
    assert misses["cold"] >= 3 and misses["warm"] == 0, misses
    assert any(p.name.startswith("jit_iterations") for p in (tmp_path / "cache").iterdir())
    assert runs["cold"] == runs["warm"]
    assert len(runs["cold"]) >= 4 and "d_loss" in runs["cold"][-1]


def test_an_unusable_compilation_cache_folder_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _train([f"--compilation_cache={blocker}/cache", f"--workdir={tmp_path}/w"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "train.py: error: cannot create the compilation cache folder" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()
