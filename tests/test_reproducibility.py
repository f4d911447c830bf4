"""Reproducible to the bit and safe against preemption: real processes, real kills.

Every comparison here is bitwise: every leaf of the final checkpointed GANState and
every logged metric of an interrupted-and-resumed run equals an uninterrupted run's.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxgan import checkpointing, files, health, state, steps, trainer
from jaxgan.configs import grid25

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Short, with a checkpoint every 4 steps and metrics at every step.
BASE = [
    "--config.log_every=1",
    "--config.eval_every=12",
    "--config.ckpt_every=4",
    "--config.num_eval_samples=200",
]

pytestmark = pytest.mark.slow


def env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}


def run(args, cwd, timeout=300):
    cmd = [sys.executable, TRAIN, *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def start(args, cwd):
    return subprocess.Popen(
        [sys.executable, TRAIN, *args], cwd=cwd, env=env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


final_state = checkpointing.newest_arrays  # every leaf of the newest checkpoint, as numpy


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_run(a, b, restart=0):
    """Same final state, leaf by leaf, and the same metrics logged after ``restart``.

    (At the step where a run segment ends, it also evaluates; records up to that step
    may hold those extra fields, and their training metrics must still be equal.)
    """
    step_a, leaves_a = final_state(a)
    step_b, leaves_b = final_state(b)
    assert step_a == step_b
    assert leaves_a.keys() == leaves_b.keys()
    for name in leaves_a:
        assert leaves_a[name].dtype == leaves_b[name].dtype, name
        assert leaves_a[name].tobytes() == leaves_b[name].tobytes(), f"{name} differs"
    ma, mb = metrics(a), metrics(b)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    for ra, rb in zip(ma, mb, strict=True):
        if ra["step"] > restart:
            assert ra == rb
        else:
            assert _training_fields(ra) == _training_fields(rb)


def _training_fields(record):
    return {k: v for k, v in record.items() if not k.startswith(("eval_", "alarm_mode"))}


def tmp_folders(workdir):
    ckpt = os.path.join(workdir, "checkpoints")
    return [n for n in os.listdir(ckpt) if TMP_SUFFIX in n] if os.path.isdir(ckpt) else []


def complete_steps(workdir):
    ckpt = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(ckpt) if n.isdigit()) if os.path.isdir(ckpt) else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 12-step run."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = run([*BASE, "--config.num_steps=12", f"--workdir={tmp}/w"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp / "w"


# ------------------------------------------------------------------ 1. same config, same bits


def test_same_config_gives_the_same_bits(reference, tmp_path):
    proc = run([*BASE, "--config.num_steps=12", f"--workdir={tmp_path}/w"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_run(reference, tmp_path / "w")


def test_healthy_run_raises_no_alarm(reference):
    for record in metrics(reference):
        assert record.get("alarm_d_saturation", 0) == 0, record
        assert record.get("alarm_mode_collapse", 0) == 0, record


# ------------------------------------------------------------------ 2. exact resume at any step


@pytest.mark.parametrize("stop", [1, 4, 7], ids=["at-step-1", "on-interval", "off-interval"])
def test_resume_at_any_step_is_bitwise_equal(reference, tmp_path, stop):
    first = run([*BASE, f"--config.num_steps={stop}", f"--workdir={tmp_path}/w"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert complete_steps(tmp_path / "w")[-1] == stop
    second = run([*BASE, "--config.num_steps=12", f"--workdir={tmp_path}/w"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"from the checkpoint at step {stop}" in second.stdout
    assert_same_run(reference, tmp_path / "w", restart=stop)


# ------------------------------------------------------------------ 3. kill -9


KILL_ARGS = [*BASE, "--config.num_steps=12", "--config.ckpt_every=2", "--config.keep_checkpoints=2"]


def _kill_when(args, cwd, workdir, ready, timeout=120):
    proc = start(args, cwd)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready(workdir):
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(0.001)
    proc.kill()
    proc.communicate()
    return False


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill_reference")
    proc = run([*KILL_ARGS, f"--workdir={tmp}/w"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp / "w"


@pytest.mark.parametrize(
    "moment",
    [
        # during a write (orbax's temporary folder exists), after one complete checkpoint
        lambda w: bool(tmp_folders(w)) and bool(complete_steps(w)),
        # between writes: a complete checkpoint and no write under way
        lambda w: bool(complete_steps(w)) and not tmp_folders(w),
        # during the very first write
        lambda w: bool(tmp_folders(w)) and not complete_steps(w),
    ],
    ids=["during-write", "between-writes", "during-first-write"],
)
def test_kill_9_then_rerun_is_bitwise_equal(kill_reference, tmp_path, moment):
    workdir = tmp_path / "w"
    args = [*KILL_ARGS, f"--workdir={workdir}"]
    if not _kill_when(args, tmp_path, workdir, moment):
        pytest.skip("the run finished before the moment to kill it came (machine too fast)")
    proc = run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tmp_folders(workdir) == []
    assert_same_run(kill_reference, workdir)


# ------------------------------------------------------------------ 4. SIGTERM, two processes


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(args, cwd):
    port = _free_port()
    common = [*args, f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    return [start([*common, f"--process_id={i}"], cwd) for i in (0, 1)]


def test_sigterm_to_one_of_two_processes(tmp_path):
    workdir = tmp_path / "w"
    args = [*BASE, "--config.num_steps=100000", "--config.ckpt_every=100000",
            "--config.eval_every=100000", "--config.batch_size=100",
            f"--workdir={workdir}"]  # fmt: skip
    procs = _two_processes(args, tmp_path)
    deadline = time.time() + 180
    while not (workdir / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outs
    saved = complete_steps(workdir)
    assert len(saved) == 1, saved  # every process saved the same, single step
    assert f"saved a checkpoint at step {saved[0]}" in outs[0][0]

    total = saved[0] + 3
    resumed = _two_processes([*args[:-5], f"--config.num_steps={total}", *args[-4:]], tmp_path)
    outs = [p.communicate(timeout=180) for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], outs
    fresh_dir = tmp_path / "fresh"
    fresh_args = [*args[:-5], f"--config.num_steps={total}", *args[-4:-1]]
    fresh_args.append(f"--workdir={fresh_dir}")
    fresh = _two_processes(fresh_args, tmp_path)
    outs = [p.communicate(timeout=180) for p in fresh]
    assert [p.returncode for p in fresh] == [0, 0], outs
    assert_same_run(fresh_dir, workdir)


def test_four_devices_match_one_device(tmp_path, pacgan_recipe):
    args = [*BASE, *pacgan_recipe, "--config.num_steps=3", "--config.eval_every=3"]
    args.append("--config.ckpt_every=3")
    one = run([*args, f"--workdir={tmp_path}/one"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    env4 = {**env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    four = subprocess.run(
        [sys.executable, TRAIN, *args, f"--workdir={tmp_path}/four"],
        cwd=tmp_path, env=env4, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert four.returncode == 0, four.stderr
    info = json.load(open(tmp_path / "four" / "run_info.json"))["sessions"][0]
    assert len(info["devices"]) == 4
    _, a = final_state(tmp_path / "one")
    _, b = final_state(tmp_path / "four")
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)


# ------------------------------------------------------------------ 5. a failing write


def test_failing_checkpoint_write_stops_naming_the_step(tmp_path):
    workdir = tmp_path / "w"
    ckpt = workdir / "checkpoints"
    args = [*BASE, "--config.num_steps=100000", "--config.ckpt_every=200",
            "--config.log_every=100", "--config.eval_every=100000",
            f"--workdir={workdir}"]  # fmt: skip
    proc = start(args, tmp_path)
    deadline = time.time() + 180
    while not (complete_steps(workdir) and not tmp_folders(workdir)) and time.time() < deadline:
        time.sleep(0.01)
    made_immutable = (
        subprocess.run(["chattr", "+i", str(ckpt)], capture_output=True).returncode == 0
    )
    try:
        if not made_immutable:
            proc.kill()
            proc.communicate()
            pytest.skip("chattr +i is not available here to make the checkpoint folder read-only")
        out, err = proc.communicate(timeout=120)
    finally:
        subprocess.run(["chattr", "-i", str(ckpt)], capture_output=True)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err and "ERROR:absl" not in err, err  # orbax's are silenced
    (line,) = err.strip().splitlines()  # one line, ours
    assert line.startswith("train.py: error:"), err
    assert "checkpoint at step 400 failed" in line, line
    assert "newest complete checkpoint is step 200" in line, line
    assert complete_steps(workdir) == [200]
    # Reported at the write (a step or two after it failed), not at the next save (600).
    assert metrics(workdir)[-1]["step"] == 400


# ------------------------------------------------------------------ 6. non-finite updates


def _tiny_config(num_steps):
    config = grid25.get_config()
    config.num_steps = num_steps
    config.log_every = config.ckpt_every = 1
    config.eval_every = 1000
    config.num_eval_samples = 100
    config.max_consecutive_skips = 3
    return config


def test_injected_nan_is_skipped_then_stops_and_no_checkpoint_holds_it(tmp_path, monkeypatch):
    real_factory = steps.make_train_step

    def nan_from_step_5(gan, **kwargs):
        train_step = real_factory(gan, **kwargs)

        def poisoned(state, real_batches, key):
            poison = jax.numpy.where(state.step >= 5, jax.numpy.nan, 0.0)
            return train_step(state, real_batches + poison, key)

        return poisoned

    monkeypatch.setattr(steps, "make_train_step", nan_from_step_5)
    with pytest.raises(trainer.TrainingError, match="steps 6 to 8") as info:
        trainer.train_and_evaluate(_tiny_config(50), str(tmp_path / "w"), log=lambda *_: None)
    named = int(str(info.value).split("last good checkpoint (step ")[1].split(")")[0])
    assert named in complete_steps(tmp_path / "w")  # the checkpoint it names exists
    records = metrics(tmp_path / "w")
    assert [r["skipped"] for r in records] == [0, 0, 0, 0, 0, 1, 2]
    for step in complete_steps(tmp_path / "w"):
        path = tmp_path / "w" / "checkpoints" / str(step) / "default"
        tree = ocp.StandardCheckpointer().restore(path)
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree)), step


def test_overflowed_state_is_never_saved(tmp_path, monkeypatch):
    # The step skips updates whose losses, gradients or BatchNorm statistics are not
    # finite; a parameter that overflows from finite gradients is caught at the save.
    real_factory = steps.make_train_step

    def overflow_at_step_5(gan, **kwargs):
        train_step = real_factory(gan, **kwargs)

        def overflowing(state, real_batches, key):
            new, metrics = train_step(state, real_batches, key)
            inf = jax.numpy.where(new.step >= 5, jax.numpy.inf, 0.0)
            return new.replace(g_params=jax.tree.map(lambda p: p + inf, new.g_params)), metrics

        return overflowing

    monkeypatch.setattr(steps, "make_train_step", overflow_at_step_5)
    with pytest.raises(trainer.TrainingError, match="state at step 5 is not finite") as info:
        trainer.train_and_evaluate(_tiny_config(50), str(tmp_path / "w"), log=lambda *_: None)
    assert "newest complete checkpoint is step 4" in str(info.value)
    assert complete_steps(tmp_path / "w")[-1] == 4
    for step in complete_steps(tmp_path / "w"):
        path = tmp_path / "w" / "checkpoints" / str(step) / "default"
        tree = ocp.StandardCheckpointer().restore(path)
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree)), step


# ------------------------------------------------------------------ 7. health alarms


def test_d_saturation_alarm_fires(tmp_path, pacgan_recipe):
    # ring8 has no mode at the origin where the untrained G puts everything, so a D
    # trained against a frozen G (g_lr ~ 0) becomes right on every real and fake sample.
    ring8 = os.path.join(ROOT, "jaxgan", "configs", "ring8.py")
    args = [f"--config={ring8}", *pacgan_recipe, "--config.loss=minimax",
            "--config.g_lr=1e-12", "--config.d_lr=1e-2",
            "--config.num_steps=300", "--config.log_every=1", "--config.eval_every=300",
            "--config.ckpt_every=300", "--config.num_eval_samples=100",
            f"--workdir={tmp_path}/w"]  # fmt: skip
    proc = run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert any(r["alarm_d_saturation"] for r in metrics(tmp_path / "w"))
    assert "warning: step" in proc.stdout and "D saturation" in proc.stdout


def test_mode_collapse_alarm_fires_on_a_diversity_drop(tmp_path, monkeypatch):
    values = iter([4.0, 3.0, 3.5, 0.2])  # real data, then three evaluations: a late drop

    monkeypatch.setattr(health, "sample_diversity", lambda x: next(values))
    config = _tiny_config(3)
    config.eval_every = 1
    logs = []
    assert trainer.train_and_evaluate(config, str(tmp_path / "w"), log=logs.append) == 0
    alarms = [r["alarm_mode_collapse"] for r in metrics(tmp_path / "w")]
    assert alarms == [0, 0, 1]
    assert any("mode collapse" in line for line in logs)


# ------------------------------------------------------------------ 8. PRNG contract


def test_keys_have_an_explicit_impl_and_golden_first_draws():
    keys = state.make_keys(0)
    assert jax.random.key_data(keys["train"]).tolist() == [928981903, 3453687069]
    previous = jax.config.jax_default_prng_impl
    try:
        jax.config.update("jax_default_prng_impl", "rbg")
        again = state.make_keys(0)
    finally:
        jax.config.update("jax_default_prng_impl", previous)
    assert jax.random.key_data(again["train"]).tolist() == [928981903, 3453687069]
    from jaxgan import models

    d_keys, _ = steps.step_keys(keys["train"], 0, 1)
    z = models.build_models("toy2d", data_shape=(2,)).sample_latent(
        jax.random.split(d_keys[0], 4)[0], 2
    )
    np.testing.assert_array_equal(
        np.asarray(z, np.float32),
        np.array(
            [[-1.3109837770462036, 1.3105968236923218], [0.7689201235771179, 0.5003795623779297]],
            np.float32,
        ),
    )


def test_typed_keys_round_trip_through_a_checkpoint(tmp_path):
    key = jax.random.key(7, impl="threefry2x32")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "k", {"key": key})
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "k", {"key": key})["key"]
    assert jax.dtypes.issubdtype(restored.dtype, jax.dtypes.prng_key)
    assert jax.random.key_data(restored).tolist() == jax.random.key_data(key).tolist()
    assert jax.random.normal(restored).tolist() == jax.random.normal(key).tolist()


# ------------------------------------------------------------------ 9. mismatch guards


def test_resume_under_another_jax_version_warns(reference, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / "w")
    info_path = tmp_path / "w" / "run_info.json"
    info = json.load(open(info_path))
    info["sessions"][-1]["versions"]["jax"] = "0.0.1"
    files.write_json_atomic(str(info_path), info)
    proc = run([*BASE, "--config.num_steps=13", f"--workdir={tmp_path}/w"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "started under jax 0.0.1" in proc.stdout and "bit for bit" in proc.stdout
