"""The toolkit's presets end to end: conditional SNGAN on tfds mock data (spectral norm's
u and σ in the checkpoint, a resumed run bitwise equal to the uninterrupted one), and the
class-conditional MNIST preset through train.py and the sampler's --class_label."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxgan import checkpointing, evaluators, sampling, trainer
from jaxgan.configs import cifar10_sngan_cond

tfds = pytest.importorskip("tensorflow_datasets")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sngan_config(num_steps):
    config = cifar10_sngan_cond.get_config()
    config.batch_size = 4
    config.d_steps = 2
    config.num_steps = num_steps
    config.optimizer.linear_decay_steps = 8
    config.log_every = 1
    config.ckpt_every = 2
    config.eval_every = 1000
    config.augment = "color,translation,cutout"
    return config


def _train(config, workdir):
    lines = []
    with tfds.testing.mock_data(num_examples=16):
        status = trainer.train_and_evaluate(config, str(workdir), log=lines.append)
    assert status == 0, "\n".join(lines)
    return lines


@pytest.mark.slow
def test_conditional_sngan_with_diffaugment_resumes_bit_for_bit(tmp_path, monkeypatch):
    # The evaluations' sample grids through G in chunks of 100, not 1,000: the test is of
    # the checkpoints, and this saves two thirds of its time.
    monkeypatch.setattr(sampling, "CHUNK", 100)
    _train(_sngan_config(4), tmp_path / "straight")
    _train(_sngan_config(2), tmp_path / "resumed")
    lines = _train(_sngan_config(4), tmp_path / "resumed")
    assert any("step 2" in line for line in lines), lines
    step_a, a = checkpointing.newest_arrays(str(tmp_path / "straight"))
    step_b, b = checkpointing.newest_arrays(str(tmp_path / "resumed"))
    assert step_a == step_b == 4
    spectral = [name for name in a if "spectral" in name]
    assert spectral, "the u vectors and σ are not in the checkpoint"
    assert any("sigma" in name for name in spectral)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), f"{name} differs"
    with open(tmp_path / "straight" / "config.json") as f:
        saved = json.load(f)
    assert saved["dataset"]["num_classes"] == 10


def _cli(module, *args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_mnist_cgan_trains_and_samples_the_class_asked_for(tmp_path, mnist_idx_dir):
    workdir = tmp_path / "run"
    proc = _cli(
        "jaxgan.train", "--config=mnist_cgan", f"--workdir={workdir}",
        f"--config.data.idx_dir={mnist_idx_dir}", "--config.num_steps=6",
        "--config.batch_size=16", "--config.eval_every=6", "--config.ckpt_every=6",
        "--config.eval_metrics=False", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "sevens.npy"
    proc = _cli(
        "jaxgan.sample", f"--workdir={workdir}", "--num=12", "--class_label=7",
        "--truncation=1.5", f"--out={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    samples, labels = np.load(out), np.load(tmp_path / "sevens.labels.npy")
    assert samples.shape == (12, 28, 28, 1) and np.all(labels == 7)
    assert "labels in" in proc.stdout and (tmp_path / "sevens.png").exists()
    balanced = tmp_path / "all.npy"
    proc = _cli("jaxgan.sample", f"--workdir={workdir}", "--num=20", f"--out={balanced}",
                cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "all.labels.npy"), np.arange(20) % 10)
    all_samples = np.load(balanced)
    # Sample 7 of the balanced draw is class 7 on the same noise: the same image, untruncated.
    assert not np.array_equal(all_samples[7], samples[7])  # samples were truncated
    proc = _cli("jaxgan.sample", f"--workdir={workdir}", "--num=2", "--class_label=10",
                f"--out={tmp_path / 'x.npy'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "--class_label must be in [0, 10)" in proc.stderr


def test_class_metrics_by_hand():
    probs = np.eye(3)[[0, 1, 2, 0, 2, 2]]
    labels = np.array([0, 1, 2, 0, 1, 2])
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 4))
    test_features, test_labels = rng.normal(size=(30, 4)), np.arange(30) % 3
    out = evaluators._class_metrics(features, probs, labels, test_features, test_labels, 3)
    assert out["class_accuracy"] == pytest.approx(5 / 6)
    assert out["class_accuracy_1"] == pytest.approx(0.5)
    assert out["class_accuracy_0"] == out["class_accuracy_2"] == 1.0
    assert all(np.isfinite(out[f"fid_class_{c}"]) for c in range(3))
