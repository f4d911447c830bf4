"""A newcomer's first hour: help, messages a person can act on, the library example,
early samples of the generator, Ctrl-C, quiet and complete records."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxgan import plots, run_folder, state, steps
from jaxgan.configs import default, grid25
from jaxgan.train import main as train_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}


def _cli(args, cwd, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _one_error(capsys, argv, *needles):
    assert train_main(["train.py", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


# ------------------------------------------------------------------ 1. help and arguments


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_presets_and_where_the_fields_are(capsys, flag):
    assert train_main(["train.py", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python train.py")
    for preset in ("grid25", "ring8", "mnist_mlp", "mnist_dcgan", "stacked_mnist_dcgan"):
        assert re.search(rf"^  {preset} +\S", out, re.M), preset  # each with its one line
    assert "jaxgan/configs/default.py" in out


@pytest.mark.parametrize("module", ["jaxgan.sample", "jaxgan.evaluate", "jaxgan.bench"])
def test_every_command_line_flag_has_a_meaning_and_a_default(module):
    proc = _cli(["-m", module, "--help"], ROOT)
    assert proc.returncode == 0, proc.stderr
    options = re.findall(r"^  (--\w+)(.*(?:\n {20,}.*)*)", proc.stdout, re.M)
    assert len(options) >= 5
    for flag, text in options:
        text = " ".join(text.split())
        assert text and ("default" in text or "required" in text), (flag, text)


def test_a_positional_argument_is_refused_with_a_hint(capsys):
    _one_error(capsys, ["jaxgan/configs/mnist_dcgan.py"], "--config=jaxgan/configs/mnist_dcgan.py")
    _one_error(capsys, ["help"], "--help")


# ------------------------------------------------------------------ 2. messages


def test_a_mistyped_field_gets_a_suggestion(capsys):
    line = _one_error(capsys, ["--config.batchsize=3"])
    assert "unknown config field 'batchsize' (did you mean 'batch_size'?)" in line
    assert "\\n" not in line and '"' not in line


def test_a_missing_config_file_lists_the_presets(capsys):
    _one_error(capsys, ["--config=jaxgan/configs/nope.py"], "nope.py", "grid25", "mnist_dcgan")


def test_a_wrong_type_names_the_field_and_the_type(capsys):
    _one_error(capsys, ["--config.batch_size=abc"], "config.batch_size takes a whole number")
    _one_error(capsys, ["--config.num_steps=1.5"], "config.num_steps takes a whole number")
    _one_error(capsys, ["--config.g_lr=fast"], "config.g_lr takes a number")


@pytest.mark.slow
def test_a_whole_number_in_e_notation_is_accepted_and_a_preset_by_name(tmp_path):
    args = [TRAIN, "--config=ring8", "--config.num_steps=2e1", "--config.log_every=10",
            "--config.eval_every=20", "--config.ckpt_every=20",
            f"--workdir={tmp_path}/w"]  # fmt: skip
    proc = _cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["config"]["num_steps"] == 20 and saved["config"]["data"]["name"] == "ring8"
    # 3. A shorter num_steps on a finished run: nothing to do, and nothing written.
    before = (tmp_path / "w" / "run_info.json").read_bytes()
    again = _cli([*args[:2], "--config.num_steps=10", *args[3:]], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already trained to step 20" in again.stdout and "nothing to do" in again.stdout
    assert "Done" not in again.stdout and "Mode coverage" not in again.stdout
    assert (tmp_path / "w" / "run_info.json").read_bytes() == before


def test_an_mnist_preset_without_its_data_says_how_to_get_it(tmp_path):
    env = {**_env(), "TFDS_DATA_DIR": str(tmp_path / "tfds")}  # no prepared tfds here
    args = [sys.executable, TRAIN, "--config=mnist_dcgan", f"--workdir={tmp_path}/w"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()  # no absl warnings before it
    fix = "mnist needs its data: python -m jaxgan.data download mnist --dir=data/mnist, then"
    assert line.startswith(f"train.py: error: {fix} --config.data.idx_dir"), line
    assert not (tmp_path / "w").exists()  # refused before the run began: nothing left


# ------------------------------------------------------------------ 3. the library example


def _readme_example() -> str:
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"## The library\n.*?```python\n(.*?)```", readme, re.S)
    assert block, "README.md has no python block under '## The library'"
    return block.group(1)


@pytest.mark.slow
def test_the_readme_library_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_readme_example())
    proc = _cli([str(script)], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "'modes'" in proc.stdout and "'high_quality'" in proc.stdout


@pytest.mark.slow
def test_the_own_loop_example_trains_grid25_and_prints_the_coverage(tmp_path):
    example = os.path.join(ROOT, "examples", "own_loop_grid25.py")
    proc = _cli([example, "--num_steps=3000"], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"(\d+)/25 modes, ([\d.]+)% high quality, reverse KL ([\d.]+)", proc.stdout)
    assert found, proc.stdout
    assert int(found.group(1)) >= 20  # measured: 25 modes, 22.8 % high quality at 3,000 steps


# ------------------------------------------------------------------ 5. the EMA's warm-up


def test_the_ema_warms_up_from_the_first_step():
    schedule = lambda t, **kw: float(steps.ema_decay_schedule(0.999, jax.numpy.int32(t), **kw))
    assert [schedule(t) for t in (0, 10)] == pytest.approx([0.1, 11 / 20])
    assert schedule(10**6) == pytest.approx(0.999)
    # The initialisation's share of the EMA after 300 steps: 74 % without the warm-up.
    assert np.prod([schedule(t, warmup=False) for t in range(300)]) == pytest.approx(0.741, 1e-3)
    assert np.prod([schedule(t) for t in range(300)]) < 1e-6
    config = grid25.get_config()
    config.ema_decay = 0.999
    gan = state.build_gan(config, (2,))
    st = state.create_state(gan, jax.random.key(0))
    real = jax.random.normal(jax.random.key(1), (1, 100, 2))
    new, _ = jax.jit(steps.make_train_step_for(gan, config))(st, real, jax.random.key(2))
    for ema, init, g in zip(
        *(jax.tree.leaves(t) for t in (new.g_ema_params, st.g_params, new.g_params)), strict=True
    ):
        np.testing.assert_allclose(ema, 0.1 * init + 0.9 * g, rtol=1e-5, atol=1e-7)


def test_generator_labels_say_what_the_samples_come_from():
    from jaxgan import sampling

    assert sampling.generator_label(0.999) == "EMA generator"
    assert "no EMA" in sampling.generator_label(0.0)
    assert sampling.generator_label(0.999, ema=False) == "G's own parameters"


# ------------------------------------------------------------------ 6. Ctrl-C answers at once


@pytest.mark.slow
def test_ctrl_c_answers_within_seconds_even_between_log_steps(tmp_path, mnist_idx_dir):
    workdir = tmp_path / "w"
    args = [TRAIN, "--config=mnist_dcgan", f"--config.data.idx_dir={mnist_idx_dir}",
            "--config.log_every=10000", "--config.eval_every=10000", "--config.ckpt_every=10000",
            "--config.eval_metrics=False", f"--workdir={workdir}"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 180
    while not (workdir / "run_info.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(20)  # well into the loop: unchecked, the dispatcher runs ~8 s ahead by then
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, (out, err)
    assert time.time() - sent < 5, time.time() - sent  # measured: 1.2 s (8.1 s before)
    assert "SIGINT: stopping after this step, saving a checkpoint" in err


# ------------------------------------------------------------------ 7. pictures


def test_the_scatter_colours_each_modes_3_sigma_circle_by_how_full_it_is(tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    from jaxgan import data

    ds = data.mixture("grid25")
    means = ds.arrays["means"]
    samples = means[:3].repeat(100, axis=0)  # 3 full modes, 22 empty ones
    path = tmp_path / "s.png"
    plots.save_scatter(str(path), samples, means, title="t", std=ds.std)
    pixels = matplotlib.image.imread(str(path))[..., :3].reshape(-1, 3)
    cmap = plt.get_cmap("RdYlGn")
    near = lambda colour: int((np.abs(pixels - np.asarray(colour[:3])).max(axis=1) < 0.08).sum())
    empty, full = near(cmap(0.0)), near(cmap(1.0))
    assert empty > 7 * full > 0, (empty, full)  # 22 red circles, 3 green ones


# ------------------------------------------------------------------ 8. records


def test_run_info_names_the_jaxgan_version_and_commit():
    import jaxgan

    session = run_folder._session(grid25.get_config(), jaxgan.data.mixture("grid25"), 0)
    assert session["jaxgan"]["version"] == jaxgan.__version__
    commit = session["jaxgan"]["commit"]
    assert commit == "not a git checkout" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)


def test_every_config_field_is_in_the_readme():
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## Training") : readme.index("## Evaluation")]
    for field in run_folder.flatten_config(default.get_config()):
        parent = field.split(".")[0] + ".*"
        assert f"`{field}`" in section or f"`{parent}`" in section, field


def test_console_entry_points_are_declared():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert set(scripts) == {"jaxgan-train", "jaxgan-sample", "jaxgan-evaluate", "jaxgan-bench",
                            "jaxgan-data"}  # fmt: skip
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), target
