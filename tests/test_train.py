"""train.py end to end, as a user runs it: real processes, tiny configs, temporary folders."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
CONFIGS = os.path.join(ROOT, "jaxgan", "configs")
TINY = [
    "--config.num_steps=30",
    "--config.log_every=5",
    "--config.eval_every=10",
    "--config.ckpt_every=10",
    "--config.num_eval_samples=500",
]

pytestmark = pytest.mark.slow


def run(args, cwd, timeout=300, module=None):
    cmd = [sys.executable, *(["-m", module] if module else [TRAIN]), *args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def tree_digest(path):
    """Hash of every file's name and bytes under path: proof that nothing changed."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            digest.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------ the default run


def test_default_run_writes_a_complete_run_folder(tmp_path):
    proc = run([*TINY], cwd=tmp_path)  # no --config, no --workdir: the defaults
    assert proc.returncode == 0, proc.stderr
    workdir = tmp_path / "runs" / "grid25"
    names = set(os.listdir(workdir))
    assert {"config.json", "run_info.json", "metrics.jsonl", "losses.png", "d_outputs.png"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert {"samples_0000010.png", "samples_0000030.png"} <= names
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20", "30"]
    recs = records(workdir)
    assert [r["step"] for r in recs] == [5, 10, 15, 20, 25, 30]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm"} <= set(recs[0])
    assert "eval_modes" in recs[1] and "eval_modes" not in recs[0]
    info = json.load(open(workdir / "run_info.json"))["sessions"][0]
    for package in ("python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        assert info["versions"][package]
    assert "tensorflow-datasets" in info["versions"] and info["devices"] and info["seed"] == 0
    assert len(info["dataset"]["fingerprint"]) == 64 and "xla_flags" in info
    assert json.load(open(workdir / "config.json"))["config"]["num_steps"] == 30
    assert "Mode coverage of grid25" in proc.stdout and "PacGAN4" in proc.stdout


def test_presets_load_and_have_docstrings():
    import importlib.util

    presets = ["grid25", "ring8", "mnist_mlp", "mnist_dcgan", "fashion_mnist_dcgan"]
    presets.append("cifar10_dcgan")
    for name in presets:
        spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
        assert "Command:" in module.__doc__ and "Run time:" in module.__doc__, name
        assert "Expected:" in module.__doc__, name
        for field in ("seed", "num_steps", "batch_size", "d_steps", "g_lr", "d_lr", "loss"):
            assert field in config, (name, field)
        assert {"name", "idx_dir"} <= set(config.data)


# ------------------------------------------------------------------ data sources


def test_mnist_from_idx_files(tmp_path, mnist_idx_dir):
    args = [
        f"--config={CONFIGS}/mnist_dcgan.py",
        f"--workdir={tmp_path}/w",
        f"--config.data.idx_dir={mnist_idx_dir}",
        "--config.batch_size=8",
        "--config.num_steps=3",
        "--config.eval_metrics=False",  # the classifier's first training is tested elsewhere
    ]
    proc = run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(tmp_path / "w" / "samples_0000003.png")
    info = json.load(open(tmp_path / "w" / "config.json"))["dataset"]
    assert info["shape"] == [28, 28, 1] and info["name"] == "mnist"


def test_tfds_through_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    from jaxgan import trainer
    from jaxgan.configs import mnist_mlp

    config = mnist_mlp.get_config()
    config.data.name = "mnist"
    config.batch_size = 10
    config.num_steps = 3
    config.log_every = config.eval_every = config.ckpt_every = 3
    logs = []
    with tfds.testing.mock_data(num_examples=20):
        status = trainer.train_and_evaluate(config, str(tmp_path / "w"), log=logs.append)
    assert status == 0
    recs = records(tmp_path / "w")
    assert recs[-1]["step"] == 3 and np.isfinite(recs[-1]["d_loss"])
    assert json.load(open(tmp_path / "w" / "config.json"))["dataset"]["shape"] == [28, 28, 1]


def test_trainer_logs_image_metrics_from_the_evaluator(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from jaxgan import evaluators, trainer
    from jaxgan.configs import mnist_mlp

    calls = []

    def fake_make_evaluator(dataset, *, output_range, **kwargs):
        def run(samples):
            calls.append(samples.shape)
            assert samples.min() >= output_range[0] and samples.max() <= output_range[1]
            return {"fid": float(samples.mean()), "kid": 0.5}

        return evaluators.Evaluator(dataset.name, 700, {}, {"metrics": "fake"}, run)

    monkeypatch.setattr(evaluators, "make_evaluator", fake_make_evaluator)
    config = mnist_mlp.get_config()
    config.batch_size, config.num_steps = 10, 2
    config.log_every = config.eval_every = config.ckpt_every = 2
    with tfds.testing.mock_data(num_examples=20):
        assert trainer.train_and_evaluate(config, str(tmp_path / "w"), log=print) == 0
    assert calls == [(700, 28, 28, 1)]  # drawn in chunks, cut to the evaluator's count
    last = records(tmp_path / "w")[-1]
    assert last["eval_kid"] == 0.5 and 0.0 <= last["eval_fid"] <= 1.0


# ------------------------------------------------------------------ exact resume, sampling


def test_resume_is_bitwise_equal_and_sampling_is_reproducible(tmp_path):
    common = [*TINY, "--config.num_steps=40", "--config.eval_every=10"]
    full = run([*common, f"--workdir={tmp_path}/full"], cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    first = run([*common, "--config.num_steps=20", f"--workdir={tmp_path}/split"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run([*common, f"--workdir={tmp_path}/split"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Resuming" in second.stdout and "step 20" in second.stdout
    assert records(tmp_path / "full") == records(tmp_path / "split")  # bitwise: exact floats

    outs = []
    for workdir, seed in (("full", 3), ("split", 3), ("full", 4)):
        out = tmp_path / f"{workdir}_{seed}.npy"
        args = [f"--workdir={tmp_path}/{workdir}", "--num=300", f"--seed={seed}", f"--out={out}"]
        proc = run(args, cwd=tmp_path, module="jaxgan.sample")
        assert proc.returncode == 0, proc.stderr
        assert os.path.exists(str(out)[:-4] + ".png")
        outs.append(open(out, "rb").read())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    assert np.load(tmp_path / "full_3.npy").shape == (300, 2)


def test_several_seeds_train_together(tmp_path):
    short = ["--config.num_steps=4", "--config.log_every=2", "--config.eval_every=4",
             "--config.ckpt_every=4", "--config.num_eval_samples=300"]  # fmt: skip
    one = run([*short, f"--workdir={tmp_path}/one"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    many = run([*short, "--config.num_seeds=3", f"--workdir={tmp_path}/many"], cwd=tmp_path)
    assert many.returncode == 0, many.stderr
    assert "3 seeds" in many.stdout and "mean ± s.e." in many.stdout
    single, multi = records(tmp_path / "one")[-1], records(tmp_path / "many")[-1]
    assert len(multi["d_loss_seeds"]) == 3 and len(set(multi["d_loss_seeds"])) == 3
    assert multi["d_loss"] == pytest.approx(np.mean(multi["d_loss_seeds"]))
    assert multi["d_loss_se"] > 0 and len(multi["eval_modes_seeds"]) == 3
    # Seed 0 of the vmapped run is the single-seed run (up to batched-matmul rounding).
    assert multi["d_loss_seeds"][0] == pytest.approx(single["d_loss"], rel=1e-4)
    outs = []
    for index in (0, 2):
        out = tmp_path / f"s{index}.npy"
        args = [f"--workdir={tmp_path}/many", "--num=5", f"--seed_index={index}", f"--out={out}"]
        proc = run(args, cwd=tmp_path, module="jaxgan.sample")
        assert proc.returncode == 0, proc.stderr
        outs.append(np.load(out))
    assert not np.allclose(outs[0], outs[1])


def test_bfloat16_trains_the_toy_and_stays_finite(tmp_path, pacgan_recipe):
    args = [*pacgan_recipe, "--config.compute_dtype=bfloat16", "--config.num_steps=1000",
            "--config.log_every=250", "--config.eval_every=250", "--config.ckpt_every=1000",
            "--config.num_eval_samples=500", f"--workdir={tmp_path}/w"]  # fmt: skip
    proc = run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    recs = records(tmp_path / "w")
    assert all(r["finite"] == 1.0 and r["skipped"] == 0 for r in recs)
    # G spreads out from its initial point mass towards the grid (measured: 0.35 -> 1.3).
    assert recs[-1]["eval_diversity"] > 2 * recs[0]["eval_diversity"]


def test_resume_refuses_changed_model_and_touches_nothing(tmp_path):
    assert run([*TINY, f"--workdir={tmp_path}/w"], cwd=tmp_path).returncode == 0
    before = tree_digest(tmp_path / "w")
    proc = run([*TINY, f"--workdir={tmp_path}/w", "--config.pack=2"], cwd=tmp_path)
    assert_one_line_error(proc, "pack", "new --workdir")
    proc = run([*TINY, f"--workdir={tmp_path}/w", "--config.data.name=ring8"], cwd=tmp_path)
    assert_one_line_error(proc, "data.name")
    assert tree_digest(tmp_path / "w") == before
    # Only num_steps changed: allowed, and it trains on.
    proc = run([*TINY, f"--workdir={tmp_path}/w", "--config.num_steps=35"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert records(tmp_path / "w")[-1]["step"] == 35


def test_workdir_with_a_checkpoint_of_another_model_is_refused(tmp_path, mnist_idx_dir):
    assert run([*TINY, f"--workdir={tmp_path}/w"], cwd=tmp_path).returncode == 0
    os.remove(tmp_path / "w" / "config.json")  # only the checkpoints tell what it was
    before = tree_digest(tmp_path / "w")
    args = [f"--config={CONFIGS}/mnist_mlp.py", f"--config.data.idx_dir={mnist_idx_dir}"]
    proc = run([*args, f"--workdir={tmp_path}/w", "--config.num_steps=2"], cwd=tmp_path)
    assert_one_line_error(proc, "new --workdir")
    assert tree_digest(tmp_path / "w") == before


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    assert run([*TINY, f"--workdir={tmp_path}/w"], cwd=tmp_path).returncode == 0
    newest = tmp_path / "w" / "checkpoints" / "30"
    for dirpath, _, filenames in os.walk(newest):
        for name in filenames:
            with open(os.path.join(dirpath, name), "wb") as f:
                f.write(b"garbage")
    proc = run([*TINY, f"--workdir={tmp_path}/w", "--config.num_steps=40"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "step 30 is unreadable" in proc.stdout and "Resuming" in proc.stdout
    assert "step 20" in proc.stdout
    assert os.path.isdir(tmp_path / "w" / "corrupt_checkpoints" / "30")  # kept, not deleted
    assert records(tmp_path / "w")[-1]["step"] == 40


# ------------------------------------------------------------------ signals and health


def test_sigterm_saves_and_exits_cleanly_then_resumes(tmp_path):
    workdir = tmp_path / "w"
    args = [
        f"--workdir={workdir}",
        "--config.num_steps=100000",
        "--config.log_every=10",
        "--config.ckpt_every=100000",
        "--config.eval_every=100000",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *args], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 120
    metrics = workdir / "metrics.jsonl"
    while not (metrics.exists() and metrics.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.time() - sent < 30
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: saved a checkpoint at step" in out
    saved = int(out.split("saved a checkpoint at step ")[1].split()[0])
    assert os.listdir(workdir / "checkpoints") == [str(saved)]
    resumed = run([*args[:1], f"--config.num_steps={saved + 5}", *args[2:]], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from the checkpoint at step {saved}" in resumed.stdout


def test_non_finite_training_stops_naming_the_step(tmp_path):
    args = [
        f"--workdir={tmp_path}/w", "--config.g_lr=1e38", "--config.d_lr=1e38",
        "--config.log_every=1", "--config.max_consecutive_skips=2", "--config.num_steps=50",
    ]  # fmt: skip
    proc = run(args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "non-finite updates, steps" in proc.stderr


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--config=jaxgan/configs/nope.py"], ["nope.py"]),
        (["--config.nope=1"], ["unknown config field", "nope"]),
        (["--config.batch_size=abc"], ["batch_size", "abc"]),
        (["--bogus=1"], ["bogus"]),
        (["--config.data.name=no_such_dataset_xyz"], ["no_such_dataset_xyz"]),
        (["--config.batch_size=0"], ["batch_size"]),
        (["--config.pack=3"], ["multiple of config.pack"]),
        (["--config.loss=vanilla"], ["Unknown config.loss"]),
        (["--config.model.name=dcgan64"], ["(64, 64, C)", "(2,)"]),
    ],
)
def test_bad_input_gives_one_line(tmp_path, args, needles):
    proc = run([*args, f"--workdir={tmp_path}/w"], cwd=ROOT, timeout=120)
    assert_one_line_error(proc, *needles)


def test_idx_folder_with_missing_or_truncated_file(tmp_path, mnist_idx_dir):
    idx = tmp_path / "idx"
    shutil.copytree(mnist_idx_dir, idx)
    os.remove(idx / "t10k-labels-idx1-ubyte.gz")
    base = [f"--config={CONFIGS}/mnist_mlp.py", f"--workdir={tmp_path}/w"]
    base.append(f"--config.data.idx_dir={idx}")
    assert_one_line_error(run(base, cwd=tmp_path), "t10k-labels-idx1-ubyte.gz")
    shutil.copy(os.path.join(mnist_idx_dir, "t10k-labels-idx1-ubyte.gz"), idx)
    data = (idx / "train-images-idx3-ubyte.gz").read_bytes()
    (idx / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run(base, cwd=tmp_path), "train-images-idx3-ubyte.gz")
    assert not os.path.exists(tmp_path / "w" / "checkpoints")
