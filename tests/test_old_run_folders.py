"""Run folders written by jaxgan 0.1 (before the 0.2 layout) still resume and sample bit for bit.

The old code is the last commit before the move, exported from this checkout's git history
into a temporary folder and run in processes of its own, on this machine: so the check
holds on whatever CPU runs it. Skipped, with the reason, when git or the commit is absent
(a shallow clone, a source archive).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from jaxgan import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_COMMIT = "982710bfc946bf16d13fabd31b96688e5df6c87f"  # jaxgan 0.1, before the 0.2 layout
SHORT = ["--config.log_every=2", "--config.eval_every=4", "--config.ckpt_every=4",
         "--config.num_eval_samples=200", "--config.ema_decay=0.9"]  # fmt: skip

pytestmark = pytest.mark.slow


def _run(tree, args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory):
    """The 0.1 source tree, whose jaxgan the old processes import."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the old code comes from this checkout's history")
    have = subprocess.run(
        ["git", "-C", ROOT, "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"], capture_output=True
    )
    if have.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT[:12]} (jaxgan 0.1) is not in this checkout's history")
    tree = tmp_path_factory.mktemp("jaxgan-0.1")
    archive = subprocess.run(["git", "-C", ROOT, "archive", OLD_COMMIT], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    probe = _run(tree, ["-c", "import jaxgan; print(jaxgan.__file__)"], cwd=tree)
    assert probe.stdout.strip().startswith(str(tree)), probe.stdout  # the old package
    assert not (tree / "jaxgan" / "run_folder.py").exists()
    return tree


@pytest.fixture(scope="module")
def old_runs(old_tree, tmp_path_factory):
    """An 8-step run and a 4-step run of the default preset, both written by jaxgan 0.1,
    and 0.1's samples of the 8-step run."""
    tmp = tmp_path_factory.mktemp("old-runs")
    train = str(old_tree / "train.py")
    _run(old_tree, [train, *SHORT, "--config.num_steps=8", f"--workdir={tmp}/full"], cwd=tmp)
    _run(old_tree, [train, *SHORT, "--config.num_steps=4", f"--workdir={tmp}/half"], cwd=tmp)
    out = tmp / "old.npy"
    sample = ["-m", "jaxgan.sample", f"--workdir={tmp}/full", "--num=300", "--seed=5"]
    _run(old_tree, [*sample, f"--out={out}"], cwd=old_tree)
    return tmp


def test_an_old_run_resumes_bit_for_bit(old_runs):
    half, full = old_runs / "half", old_runs / "full"
    proc = _run(ROOT, [os.path.join(ROOT, "train.py"), *SHORT, "--config.num_steps=8",
                       f"--workdir={half}"], cwd=old_runs)  # fmt: skip
    assert "Resuming" in proc.stdout and "step 4" in proc.stdout
    # Defaults changed since 0.1; a run resumed without flags keeps the values it had.
    assert "continues as it was trained, with " in proc.stdout, proc.stdout
    assert "ema_warmup=False" in proc.stdout
    step_a, leaves_a = checkpointing.newest_arrays(str(full))
    step_b, leaves_b = checkpointing.newest_arrays(str(half))
    assert step_a == step_b == 8 and leaves_a.keys() == leaves_b.keys()
    for name in leaves_a:
        assert leaves_a[name].tobytes() == leaves_b[name].tobytes(), f"{name} differs"
    training = lambda r: {k: v for k, v in r.items() if not k.startswith(("eval_", "alarm_mode"))}
    records = [
        [training(json.loads(line)) for line in open(w / "metrics.jsonl")] for w in (full, half)
    ]
    assert records[0] == records[1]
    # Asking for the new default explicitly is a different run: refused, naming the field.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    refused = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), *SHORT, "--config.num_steps=12",
         "--config.ema_warmup=True", f"--workdir={half}"],
        cwd=old_runs, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "ema_warmup: False -> True" in refused.stderr


def test_an_old_run_samples_bit_for_bit_and_evaluates(old_runs, tmp_path):
    out = tmp_path / "new.npy"
    _run(ROOT, ["-m", "jaxgan.sample", f"--workdir={old_runs / 'full'}", "--num=300", "--seed=5",
                f"--out={out}"], cwd=tmp_path)  # fmt: skip
    assert out.read_bytes() == (old_runs / "old.npy").read_bytes()
    _run(ROOT, ["-m", "jaxgan.evaluate", f"--workdir={old_runs / 'full'}"], cwd=tmp_path)
    record = json.loads((old_runs / "full" / "eval.json").read_text())
    assert record["step"] == 8 and set(record["metrics"]) == {"modes", "high_quality", "reverse_kl"}


def test_every_step_variant_computes_0_1s_bits(old_tree, tmp_path):
    """Reused noise, k = 2 D updates, packing and R1: the same checkpoint bits as 0.1, under
    0.1's conventions (penalties per sample, D's schedule per update, EMA without warm-up)."""
    variant = [*SHORT, "--config.num_steps=4", "--config.fresh_g_noise=False",
               "--config.d_steps=2", "--config.pack=2", "--config.r1_gamma=0.1"]  # fmt: skip
    _run(old_tree, [str(old_tree / "train.py"), *variant, f"--workdir={tmp_path}/old"], tmp_path)
    legacy = ["--config.penalty_per=sample", "--config.optimizer.schedule_per=update",
              "--config.ema_warmup=False"]  # fmt: skip
    _run(ROOT, [os.path.join(ROOT, "train.py"), *variant, *legacy, f"--workdir={tmp_path}/new"],
         tmp_path)  # fmt: skip
    _, old = checkpointing.newest_arrays(str(tmp_path / "old"))
    _, new = checkpointing.newest_arrays(str(tmp_path / "new"))
    assert old.keys() == new.keys()
    assert all(old[name].tobytes() == new[name].tobytes() for name in old)
