"""Nothing lost under faults and misuse: each fault tried as a user or a scheduler would.

Real processes where the fault is between processes: two trainers on one folder, a
trainer killed with -9, two processes of one run that disagree, a corrupt checkpoint
under two processes, SIGINT to one of two processes.
"""

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxgan import checkpointing, data, errors, run_folder, state, steps, trainer
from jaxgan.configs import grid25

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
QUICK = ["--config.log_every=2", "--config.eval_every=1000", "--config.ckpt_every=4",
         "--config.num_eval_samples=100"]  # fmt: skip


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}


def _run(args, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _start(args, cwd):
    return subprocess.Popen([sys.executable, TRAIN, *args], cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for(path, proc, timeout=120, nonempty=False):
    """Until ``path`` exists (and, with ``nonempty``, holds something: the metrics file
    is created before the first compile, its first record written after a step)."""
    deadline = time.time() + timeout
    while not os.path.exists(path) or (nonempty and os.path.getsize(path) == 0):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def _error_line(proc, status=2):
    assert proc.returncode == status, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _two_processes(args, cwd, extra=((), ())):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    common = [*args, f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    return [_start([*common, *extra[i], f"--process_id={i}"], cwd) for i in (0, 1)]


# ------------------------------------------------------------------ 1. one trainer per folder


@pytest.mark.slow
def test_a_second_trainer_on_a_live_folder_is_refused_at_once(tmp_path):
    workdir = tmp_path / "w"
    first = _start([*QUICK, "--config.num_steps=100000", f"--workdir={workdir}"], tmp_path)
    try:
        _wait_for(workdir / "metrics.jsonl", first)
        started = time.time()
        second = _run([*QUICK, "--config.num_steps=100000", f"--workdir={workdir}"], tmp_path)
        line = _error_line(second)
        assert time.time() - started < 30  # before the data, the compile or the checkpoints
        assert f"pid {first.pid} on host {socket.gethostname()}" in line, line
        assert "in use by the trainer" in line and "Nothing was changed" in line
        assert "Resuming" not in second.stdout
        assert first.poll() is None  # the first one trains on, untouched
    finally:
        first.send_signal(signal.SIGINT)
        _out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    steps_logged = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
    assert steps_logged == sorted(set(steps_logged))  # no duplicated, out-of-order steps
    assert not (workdir / run_folder.LOCK_FILE).exists()  # released on exit


@pytest.mark.slow
def test_the_lock_of_a_killed_trainer_is_stale_and_taken_over(tmp_path):
    workdir = tmp_path / "w"
    first = _start([*QUICK, "--config.num_steps=100000", f"--workdir={workdir}"], tmp_path)
    _wait_for(workdir / "metrics.jsonl", first)
    first.kill()  # kill -9: the lock file stays, its lock does not
    first.communicate()
    assert (workdir / run_folder.LOCK_FILE).exists()
    again = _run([*QUICK, "--config.num_steps=8", f"--workdir={workdir}"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"pid {first.pid} on host" in again.stdout and "stale lock" in again.stdout


def test_the_lock_holder_is_named_and_released(tmp_path):
    lock = run_folder.RunLock(str(tmp_path))
    assert lock.acquire() is None
    held = json.loads((tmp_path / run_folder.LOCK_FILE).read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    lock.release()
    assert not (tmp_path / run_folder.LOCK_FILE).exists()
    assert run_folder.RunLock(str(tmp_path)).acquire() is None  # free again


# ------------------------------------------------------------------ 2. corrupt checkpoint, 2 procs


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_is_survived_by_two_processes(tmp_path):
    workdir = tmp_path / "w"
    args = [*QUICK, "--config.batch_size=100", f"--workdir={workdir}"]
    procs = _two_processes([*args, "--config.num_steps=8"], tmp_path)
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    newest = workdir / "checkpoints" / "8"
    for dirpath, _, names in os.walk(newest):
        for name in names:
            if name.endswith(("manifest.ocdbt", ".zarray")) or "ocdbt" in dirpath:
                open(os.path.join(dirpath, name), "wb").close()  # truncated: unreadable
    resumed = _two_processes([*args, "--config.num_steps=12"], tmp_path)
    outs = [p.communicate(timeout=180) for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], outs
    assert "unreadable" in outs[0][0] + outs[0][1] and "Resuming" in outs[0][0]
    assert os.listdir(workdir / checkpointing.CORRUPT_DIR) == ["8"]  # moved once, kept
    assert 12 in [int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()]
    assert 8 in [int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()]  # saved anew


# ------------------------------------------------------------------ 3. every skipped step counts


def _poisoned(monkeypatch, first, last):
    """Non-finite real batches at iterations first..last (1-based), so those are skipped."""
    real_factory = steps.make_train_step

    def factory(gan, **kwargs):
        train_step = real_factory(gan, **kwargs)

        def poisoned(st, real_batches, key):
            bad = (st.step >= first - 1) & (st.step < last)
            return train_step(st, real_batches + jax.numpy.where(bad, jax.numpy.nan, 0.0), key)

        return poisoned

    monkeypatch.setattr(steps, "make_train_step", factory)


@pytest.mark.parametrize("fused", [1, 5])
def test_a_streak_between_log_steps_stops_the_run(tmp_path, monkeypatch, fused):
    _poisoned(monkeypatch, 5, 29)  # 25 skipped updates in a row, all between log steps
    config = grid25.get_config()
    config.num_steps, config.log_every, config.steps_per_dispatch = 100, 50, fused
    config.eval_every = config.ckpt_every = 1000
    config.max_consecutive_skips = 3
    message = "25 consecutive non-finite updates, steps 5 to 29"
    with pytest.raises(errors.TrainingError, match=message):
        trainer.train_and_evaluate(config, str(tmp_path / "w"), log=lambda *_: None)
    records = [json.loads(line) for line in open(tmp_path / "w" / "metrics.jsonl")]
    assert records == []  # stopped at the first log step, 50, before writing it


# ------------------------------------------------------------------ 4-5. penalties


def _packed_critic(w):
    """A linear critic of packs of 2 two-d samples: score = w · (x_2i, x_2i+1)."""
    return lambda x: x.reshape(-1, 4) @ w


def test_r1_and_r2_under_packing_are_the_packed_critics_squared_gradient_norm():
    from jaxgan import losses

    w = jax.numpy.array([1.0, 2.0, 3.0, 4.0])
    x = jax.random.normal(jax.random.key(0), (6, 2))
    per_pack = losses.r1_penalty(_packed_critic(w), x, pack=2)
    np.testing.assert_allclose(per_pack, np.full(3, 30.0), rtol=1e-6)  # ‖w‖² per pack
    per_sample = losses.r1_penalty(_packed_critic(w), x)  # jaxgan <= 0.2: per sample
    np.testing.assert_allclose(per_sample, np.tile([5.0, 25.0], 3), rtol=1e-6)
    assert float(per_pack.mean()) == pytest.approx(2 * float(per_sample.mean()))
    np.testing.assert_allclose(losses.r2_penalty(_packed_critic(w), x, pack=2), per_pack)


def test_wgan_gp_under_packing_draws_one_eps_per_pack_and_uses_the_packs_norm():
    from jaxgan import losses

    w = jax.numpy.array([0.3, 0.4, 0.0, 0.0])  # ‖w‖ = 0.5: the packed critic's gradient norm
    real, fake = jax.numpy.ones((4, 2)), jax.numpy.zeros((4, 2))
    seen = []

    def critic(x):
        jax.debug.callback(lambda v: seen.append(np.asarray(v)), x)  # the interpolates
        return _packed_critic(w)(x)

    gp = losses.wgan_gp_penalty(critic, real, fake, jax.random.key(1), pack=2)
    np.testing.assert_allclose(gp, np.full(2, 0.25), rtol=1e-6)  # (0.5 - 1)² per pack
    eps = seen[0][:, 0]
    assert eps[0] == eps[1] and eps[2] == eps[3] and eps[0] != eps[2]
    with pytest.raises(ValueError, match="packs of 2"):
        losses.wgan_gp_penalty(critic, real[:3], fake[:3], jax.random.key(1), pack=2)


def _gan(model="toy2d", shape=(2,), pack=1, d_norm="batch"):
    config = grid25.get_config()
    config.model.name, config.pack, config.model.d_norm = model, pack, d_norm
    return state.build_gan(config, shape)


def test_the_step_applies_r1_per_pack():
    gan = _gan(pack=2)
    st = state.create_state(gan, jax.random.key(0))
    real = jax.random.normal(jax.random.key(1), (1, 8, 2))
    penalty = {}
    for unit in ("pack", "sample"):
        step = steps.make_train_step(gan, r1_gamma=1.0, penalty_per=unit, ema_decay=0.0)
        penalty[unit] = float(jax.jit(step)(st, real, jax.random.key(2))[1]["d_penalty"])
    assert penalty["pack"] == pytest.approx(2 * penalty["sample"], rel=1e-5)


def test_penalties_through_batchnorm_are_refused_and_layer_norm_works():
    gan = _gan("dcgan32", (32, 32, 3))
    for weights in ({"r1_gamma": 1.0}, {"r2_gamma": 1.0}, {"gp_weight": 10.0}):
        with pytest.raises(ValueError, match=r"BatchNorm.*d_norm=layer"):
            steps.make_train_step(gan, **weights)
    steps.make_train_step(gan)  # no penalty: BatchNorm is fine
    layer = _gan("dcgan32", (32, 32, 3), d_norm="layer")
    st = state.create_state(layer, jax.random.key(0))
    assert not st.d_model_state  # no batch statistics left in D
    step = jax.jit(steps.make_train_step(layer, r1_gamma=1.0, ema_decay=0.0))
    real = jax.random.uniform(jax.random.key(1), (1, 4, 32, 32, 3), minval=-1.0)
    _, metrics = step(st, real, jax.random.key(2))
    assert np.isfinite(float(metrics["d_penalty"])) and float(metrics["d_penalty"]) > 0
    # Each example's score, and so its gradient, depends on that example alone.
    d = lambda x: layer.discriminator.apply({"params": st.d_params}, x, train=True)
    x = real[0]
    changed = x.at[1:].set(0.0)
    np.testing.assert_allclose(d(x)[0], d(changed)[0], rtol=1e-5, atol=1e-6)


def test_negative_weights_and_an_unconstrained_wasserstein_loss():
    gan = _gan()
    with pytest.raises(ValueError, match="r1_gamma must be >= 0"):
        steps.make_train_step(gan, r1_gamma=-0.1)
    config = grid25.get_config()
    config.gp_weight = -1.0
    with pytest.raises(errors.ConfigError, match="gp_weight must be >= 0"):
        trainer.validate_config(config)
    config = grid25.get_config()
    config.loss = "wasserstein"
    (warning,) = trainer.config_warnings(config)
    assert "Lipschitz" in warning and "gp_weight=10" in warning
    config.gp_weight = 10.0
    assert trainer.config_warnings(config) == []


# ------------------------------------------------------------------ 6. schedules per iteration


@pytest.mark.parametrize("k", [1, 5])
def test_schedules_count_iterations_for_g_and_d_alike(k):
    config = grid25.get_config()  # lr_decay 0.99977 per iteration
    config.d_steps = k
    config.optimizer.name, config.optimizer.momentum = "sgd", 0.5
    config.optimizer.final_momentum, config.optimizer.momentum_ramp_steps = 0.7, 10
    gan = state.build_gan(config, (2,))
    st = state.create_state(gan, jax.random.key(0))
    step = jax.jit(steps.make_train_step(gan, d_steps=k, r1_gamma=0.1))
    real = jax.random.normal(jax.random.key(1), (k, 100, 2))
    for i in range(4):
        st, _ = step(st, real, jax.random.key(i))
    g, d = st.g_opt_state.hyperparams, st.d_opt_state.hyperparams
    assert float(d["learning_rate"]) == float(g["learning_rate"])
    assert float(d["momentum"]) == float(g["momentum"])
    assert float(g["learning_rate"]) == pytest.approx(1e-3 * 0.99977**3, rel=1e-6)
    legacy = config.copy_and_resolve_references()
    legacy.optimizer.schedule_per = "update"  # jaxgan <= 0.2: D's schedule per update
    d_tx = state.build_gan(legacy, (2,)).d_tx
    opt = d_tx.init(st.d_params)
    for _ in range(4 * k):
        _, opt = d_tx.update(jax.tree.map(jax.numpy.zeros_like, st.d_params), opt, st.d_params)
    expected = 1e-3 * 0.99977 ** (4 * k - 1)
    assert float(opt.hyperparams["learning_rate"]) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ 7. the run's identity


@pytest.mark.slow
def test_a_resume_under_the_other_threefry_setting_is_refused(tmp_path):
    args = [*QUICK, "--config.num_steps=4", f"--workdir={tmp_path}/w"]
    assert _run(args, tmp_path).returncode == 0
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["jax"] == {"threefry_partitionable": True}
    assert saved["config"]["model"]["conv"] == "fast"
    other = _run([*args[:-2], "--config.num_steps=8", args[-1]], tmp_path,
                 env={**_env(), "JAX_THREEFRY_PARTITIONABLE": "0"})  # fmt: skip
    line = _error_line(other)
    assert "jax.threefry_partitionable: True -> False" in line
    assert "JAX_THREEFRY_PARTITIONABLE=1" in line
    lax = _run([*args[:-2], "--config.num_steps=8", "--config.model.conv=lax", args[-1]], tmp_path)
    assert "model.conv: 'fast' -> 'lax'" in _error_line(lax)


def _idx_folder(path, seed):
    """A tiny MNIST-format folder of 28x28 images whose content depends on ``seed``."""
    rng = np.random.default_rng(seed)
    os.makedirs(path)
    for split, num in (("train", 40), ("test", 10)):
        images_file, labels_file = data.IDX_FILES[split]
        images = rng.integers(0, 256, (num, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, num, dtype=np.uint8)
        for name, array, magic in ((images_file, images, 2051), (labels_file, labels, 2049)):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            with gzip.open(os.path.join(path, name), "wb") as f:
                f.write(header + array.tobytes())


@pytest.mark.slow
def test_two_processes_with_other_data_or_config_stop_naming_the_host(tmp_path):
    _idx_folder(tmp_path / "a", seed=0)
    _idx_folder(tmp_path / "b", seed=1)
    mlp = os.path.join(ROOT, "jaxgan", "configs", "mnist_mlp.py")
    args = [f"--config={mlp}", *QUICK, "--config.num_steps=4", "--config.batch_size=10",
            "--config.eval_metrics=False"]  # fmt: skip
    data_args = ([f"--config.data.idx_dir={tmp_path / 'a'}"],
                 [f"--config.data.idx_dir={tmp_path / 'b'}"])  # fmt: skip
    procs = _two_processes([*args, f"--workdir={tmp_path}/w"], tmp_path, data_args)
    for proc in procs:
        proc.stdout_text, proc.stderr_text = proc.communicate(timeout=180)
    host = socket.gethostname()
    for proc in procs:
        done = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout_text,
                                           proc.stderr_text)  # fmt: skip
        line = _error_line(done)
        assert f"process 1 on {host}: data.fingerprint" in line, line
    assert not (tmp_path / "w" / "checkpoints").exists()
    same_data = ([data_args[0][0]], [data_args[0][0], "--config.g_lr=0.2"])
    procs = _two_processes([*args, f"--workdir={tmp_path}/v"], tmp_path, same_data)
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outs
    assert all(f"process 1 on {host}: g_lr" in err for _, err in outs), outs


# ------------------------------------------------------------------ 8. writes and signals


@pytest.mark.slow
def test_sigint_to_one_of_two_processes_stops_both_with_143(tmp_path):
    workdir = tmp_path / "w"
    args = [*QUICK, "--config.num_steps=100000", "--config.ckpt_every=100000",
            "--config.batch_size=100", f"--workdir={workdir}"]  # fmt: skip
    procs = _two_processes(args, tmp_path)
    _wait_for(workdir / "metrics.jsonl", procs[0], timeout=300, nonempty=True)  # training
    procs[1].send_signal(signal.SIGINT)
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outs
    assert "saved a checkpoint at step" in outs[0][0]


# ------------------------------------------------------------------ 9. data that cannot fit


def test_a_dataset_larger_than_the_device_is_refused_before_it_is_loaded(tmp_path, monkeypatch):
    """loader=device refuses data over half the device's memory, before reading it, and
    says to stream it; loader=auto (the default) streams the same data through Grain."""
    import tensorflow_datasets as tfds

    from jaxgan.configs import mnist_mlp

    monkeypatch.setattr(data, "device_memory_bytes", lambda: 20_000)  # 20 kB "device"
    config = mnist_mlp.get_config()
    config.batch_size, config.num_steps = 10, 2
    config.log_every = config.ckpt_every = config.eval_every = 2
    config.eval_metrics = config.eval_parzen = False
    config.data.loader = "device"
    with tfds.testing.mock_data(num_examples=40):  # 40 x 784 bytes = 31 kB > 50 % of 20 kB
        with pytest.raises(errors.DataError) as info:
            trainer.train_and_evaluate(config, str(tmp_path / "w"), log=lambda *_: None)
    message = str(info.value)
    assert "40 images of 28×28×1 = 30.6 KiB" in message and "of cpu memory" in message
    assert "--config.data.loader=grain" in message and "train[:10%]" in message
    assert not (tmp_path / "w" / "checkpoints").exists()

    config.data.loader = "auto"
    logs = []
    with tfds.testing.mock_data(num_examples=40):
        assert trainer.train_and_evaluate(config, str(tmp_path / "w"), log=logs.append) == 0
    assert any(line.startswith("data: grain loader (mnist 30.6 KiB") for line in logs), logs


# ------------------------------------------------------------------ conventions of older runs


@pytest.mark.slow
def test_a_run_under_the_old_penalty_convention_resumes_as_it_was(tmp_path):
    old = ["--config.penalty_per=sample", "--config.pack=2", "--config.r1_gamma=0.1"]
    full = _run([*QUICK, *old, "--config.num_steps=8", f"--workdir={tmp_path}/full"], tmp_path)
    assert full.returncode == 0, full.stderr
    half = [*QUICK, *old, "--config.num_steps=4", f"--workdir={tmp_path}/half"]
    assert _run(half, tmp_path).returncode == 0
    # The same penalty in the papers' convention (0.1 per sample = 0.05 per pack of 2).
    new = ["--config.pack=2", "--config.r1_gamma=0.05", "--config.num_steps=8"]
    resumed = _run([*QUICK, *new, f"--workdir={tmp_path}/half"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _, a = checkpointing.newest_arrays(str(tmp_path / "full"))
    _, b = checkpointing.newest_arrays(str(tmp_path / "half"))
    assert all(a[name].tobytes() == b[name].tobytes() for name in a)
    other = _run([*QUICK, "--config.pack=2", "--config.r1_gamma=0.1", "--config.num_steps=12",
                  f"--workdir={tmp_path}/half"], tmp_path)  # fmt: skip
    line = _error_line(other)
    assert "r1_gamma: 0.05 -> 0.1 in the papers' terms" in line, line
    assert "penalty_per='sample'" in line


def test_fields_a_run_predates_keep_their_old_values_unless_given(tmp_path):
    config = grid25.get_config()
    old = config.to_dict()
    del old["ema_warmup"], old["penalty_per"]  # written before these fields existed
    record = {"config": old, "dataset": {"name": "grid25", "fingerprint": "x"}}
    (tmp_path / run_folder.CONFIG_FILE).write_text(json.dumps(record))
    predated = run_folder.predated_fields(str(tmp_path), config, given=set())
    assert predated == {"ema_warmup": False, "penalty_per": "sample"}
    given = run_folder.predated_fields(str(tmp_path), config, given={"ema_warmup"})
    assert given == {"penalty_per": "sample"}  # set on the command line: the user's choice
    resumed = run_folder.with_fields(config, predated)
    assert resumed.ema_warmup is False and config.ema_warmup is True  # a copy
    assert run_folder.predated_fields(str(tmp_path / "new"), config, given=set()) == {}
