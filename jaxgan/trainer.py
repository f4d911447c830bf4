"""The training loop: data on device, the jitted step, logging, pictures, checkpoints.

This is the only module (with ``jaxgan.sample``) that touches files, clocks, signals
and devices. ``train_and_evaluate(config, workdir)`` is the whole job; ``train.py``
only parses flags and calls it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import signal
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from jaxgan import checkpointing, evaluate, health, plots, steps
from jaxgan import data as data_lib
from jaxgan import losses as losses_lib
from jaxgan import models as models_lib
from jaxgan import state as state_lib
from jaxgan.checkpointing import RunError

__all__ = ["RunError", "TrainingError", "make_keys", "train_and_evaluate"]

METRICS_FILE = "metrics.jsonl"
RUN_INFO_FILE = "run_info.json"
NUM_GRID_SAMPLES = 64
EXIT_SIGNAL_BASE = 128  # a run stopped by signal N exits with 128 + N, as shells report it


class TrainingError(RunError):
    """Training cannot go on (e.g. non-finite updates); the message names the step."""


def make_keys(seed: int) -> dict[str, jax.Array]:
    """The run's root keys, from the seed alone, with an explicit PRNG implementation.

    ``threefry2x32`` is named so that a global default (``jax_default_prng_impl``)
    cannot change a run's random numbers.
    """
    root = jax.random.key(int(seed), impl="threefry2x32")
    init, train, data, evaluation = jax.random.split(root, 4)
    return {"init": init, "train": train, "data": data, "eval": evaluation}


def validate_config(config: Any) -> None:
    """Raises RunError for values no run can use."""
    positive = ("batch_size", "d_steps", "log_every", "eval_every", "ckpt_every")
    positive += ("steps_per_dispatch", "max_consecutive_skips")
    for name in positive:
        value = config[name]
        if not isinstance(value, int) or value < 1:
            raise RunError(f"config.{name} must be a positive integer, got {value!r}.")
    for name in ("log_every", "eval_every", "ckpt_every", "num_steps"):
        if config[name] % config.steps_per_dispatch:
            raise RunError(
                f"config.{name} ({config[name]}) must be a multiple of "
                f"config.steps_per_dispatch ({config.steps_per_dispatch})."
            )
    if config.num_steps < 0:
        raise RunError(f"config.num_steps must be >= 0, got {config.num_steps}.")
    if config.model.pack < 1 or config.batch_size % config.model.pack:
        raise RunError(
            f"config.batch_size ({config.batch_size}) must be a multiple of config.model.pack "
            f"({config.model.pack})."
        )
    choices = {
        "loss": (config.loss, sorted(losses_lib.LOSSES)),
        "model.name": (config.model.name, list(models_lib.MODEL_NAMES)),
        "optimizer.name": (config.optimizer.name, ["adam", "sgd"]),
    }
    for field, (value, allowed) in choices.items():
        if value not in allowed:
            raise RunError(f"Unknown config.{field} {value!r}; choose one of {allowed}.")
    if not 0.0 <= config.ema_decay < 1.0:
        raise RunError(f"config.ema_decay must be in [0, 1), got {config.ema_decay}.")
    for name in ("g_lr", "d_lr"):
        if not config[name] > 0:
            raise RunError(f"config.{name} must be positive, got {config[name]}.")


def _versions() -> dict[str, str]:
    names = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "numpy"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _run_info(config, dataset: data_lib.Dataset, start_step: int) -> dict[str, Any]:
    return {
        "start_step": start_step,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "versions": _versions(),
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        # XLA:CPU's thread pool, and so its rounding, follows the cores a process may use.
        "cpu_cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_default_prng_impl": str(jax.config.jax_default_prng_impl),
        "seed": config.seed,
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint},
    }


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drops records logged after ``last_step`` (by a run that died before its next save)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError):
            break  # a torn last line
    if len(kept) != len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, path)


def _to_python(metrics: dict[str, Any]) -> dict[str, float | int]:
    out = {}
    for key, value in jax.device_get(metrics).items():
        value = np.asarray(value)
        out[key] = int(value) if np.issubdtype(value.dtype, np.integer) else float(value)
    return out


class _SignalFlag:
    """Records SIGINT/SIGTERM instead of dying, so the loop can save and exit cleanly.

    Under several processes SIGTERM is left to JAX's preemption service (which tells
    every process to stop at the same step), and SIGINT is forwarded to it as SIGTERM.
    """

    def __init__(self, multi_process: bool = False):
        self.signum: int | None = None
        self.multi_process = multi_process
        self._previous = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            signals = (signal.SIGINT,) if self.multi_process else (signal.SIGINT, signal.SIGTERM)
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        if self.multi_process:
            os.kill(os.getpid(), signal.SIGTERM)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _mesh() -> tuple[Mesh, NamedSharding, NamedSharding]:
    """One data-parallel mesh over every device of every process."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    return mesh, NamedSharding(mesh, P()), NamedSharding(mesh, P(None, "data"))


def _global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from identical host copies on every process (no per-step copies)."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def train_and_evaluate(config: Any, workdir: str, *, log=print) -> int:
    """Trains (or resumes) the run in ``workdir``; returns the process exit status.

    Data-parallel over every device of every process (``jax.distributed`` must be
    initialized first for several processes): the batch is sharded over a 1-D mesh,
    parameters and optimizer states are replicated, and BatchNorm statistics are
    those of the global batch. Only process 0 writes logs, metrics and pictures; all
    processes write their part of each checkpoint.

    Returns:
      0 when ``num_steps`` were reached; ``128 + signum`` when SIGINT/SIGTERM stopped
      the run after saving a checkpoint of the step reached.

    Raises:
      RunError: bad config, unusable run folder, or training that cannot go on. The
        message is one line meant for the user; nothing in the run folder is lost.
      jaxgan.data.DataError: the dataset cannot be loaded.
    """
    validate_config(config)
    workdir = os.path.abspath(workdir)
    if config.batch_size % jax.device_count():
        raise RunError(
            f"config.batch_size ({config.batch_size}) must be a multiple of the number of "
            f"devices ({jax.device_count()}): the batch is split evenly across them."
        )
    dataset = data_lib.load(config.data)
    try:
        gan = state_lib.build_gan(config, dataset.shape)
    except ValueError as e:  # e.g. a network that cannot produce this data's shape
        raise RunError(f"{e}: choose a model for {dataset.name!r} data.") from e

    # ------------------------------------------------------------ run folder and resume
    identity = checkpointing.flatten_config(config.to_dict())
    identity["data.fingerprint"] = dataset.fingerprint
    config_path = os.path.join(workdir, checkpointing.CONFIG_FILE)
    if os.path.exists(config_path):
        try:
            saved = checkpointing.read_json(config_path)
            saved_identity = checkpointing.flatten_config(saved["config"])
            saved_identity["data.fingerprint"] = saved["dataset"]["fingerprint"]
        except (OSError, ValueError, KeyError) as e:
            raise RunError(f"{config_path} is unreadable ({e}); use a new --workdir.") from e
        checkpointing.check_resumable(saved_identity, identity, workdir)

    os.makedirs(workdir, exist_ok=True)
    manager = checkpointing.open_manager(workdir, keep=config.keep_checkpoints)
    failed = True
    try:
        status = _train(config, workdir, dataset, gan, manager, log)
        failed = False
        return status
    finally:
        # Never leave with a checkpoint half written, and never swallow a failed write.
        try:
            manager.wait_until_finished()
            manager.close()
        except Exception as e:
            if not failed:
                raise TrainingError(f"Writing the last checkpoint failed: {e}") from e
            log(f"warning: writing a checkpoint also failed: {e}")


def _train(config, workdir, dataset, gan, manager, log) -> int:
    is_chief = jax.process_index() == 0
    if not is_chief:
        log = lambda *_: None
    _, replicated, batch_sharded = _mesh()
    seed, k, batch, n_fused = (
        config.seed,
        config.d_steps,
        config.batch_size,
        config.steps_per_dispatch,
    )
    models = gan.models

    # ------------------------------------------------------------ state: restore or create
    init_state = jax.jit(
        lambda: state_lib.create_state(gan, make_keys(seed)["init"]), out_shardings=replicated
    )
    abstract_state = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
        jax.eval_shape(init_state),
    )
    restored = checkpointing.restore(
        manager, abstract_state, workdir, warn=log, quarantine=jax.process_count() == 1
    )
    if restored is None:
        state, start_step = init_state(), 0
    else:
        state, start_step = restored
        log(f"Resuming {workdir} from the checkpoint at step {start_step}.")
        if start_step % n_fused:
            raise RunError(
                f"The checkpoint at step {start_step} is not a multiple of "
                f"config.steps_per_dispatch={n_fused}; resume with steps_per_dispatch=1."
            )
    metrics_path = os.path.join(workdir, METRICS_FILE)
    info_path = os.path.join(workdir, RUN_INFO_FILE)
    if is_chief:
        _truncate_metrics(metrics_path, start_step)
        checkpointing.write_json_atomic(
            os.path.join(workdir, checkpointing.CONFIG_FILE),
            {
                "config": config.to_dict(),
                "dataset": {
                    "name": dataset.name,
                    "kind": dataset.kind,
                    "shape": list(dataset.shape),
                    "fingerprint": dataset.fingerprint,
                },
            },
        )
        sessions = (
            checkpointing.read_json(info_path)["sessions"] if os.path.exists(info_path) else []
        )
        if sessions and sessions[-1]["versions"]["jax"] != jax.__version__:
            log(
                f"warning: this run was started under jax {sessions[-1]['versions']['jax']} and "
                f"resumes under jax {jax.__version__}: random streams and numerics may differ, "
                "so the resumed run may not match an uninterrupted one bit for bit."
            )
        sessions.append(_run_info(config, dataset, start_step))
        checkpointing.write_json_atomic(info_path, {"sessions": sessions})

    # ------------------------------------------------------------ compiled functions
    train_step = steps.make_train_step(
        gan,
        loss=config.loss,
        d_steps=k,
        ema_decay=config.ema_decay,
        fresh_g_noise=config.fresh_g_noise,
        gp_weight=config.gp_weight,
        r1_gamma=config.r1_gamma,
        r2_gamma=config.r2_gamma,
    )
    draw = functools.partial(
        data_lib.sample_batch, dataset=dataset, value_range=models.output_range
    )

    def one_iteration(state, arrays):
        keys = make_keys(seed)
        real = draw(arrays, jax.random.fold_in(keys["data"], state.step), k * batch)
        real = jax.lax.with_sharding_constraint(
            real.reshape(k, batch, *dataset.shape), batch_sharded
        )
        return train_step(state, real, keys["train"])

    @functools.partial(jax.jit, donate_argnums=0, out_shardings=(replicated, replicated))
    def iterations(state, arrays):
        """``steps_per_dispatch`` iterations in one program; metrics of the last one."""
        if n_fused == 1:
            return one_iteration(state, arrays)
        state, metrics = jax.lax.scan(lambda s, _: one_iteration(s, arrays), state, length=n_fused)
        return state, jax.tree.map(lambda m: m[-1], metrics)

    sample_fn = steps.make_sample_fn(gan)
    sample = jax.jit(
        lambda params, model_state, num: sample_fn(
            params, model_state, make_keys(seed)["eval"], num
        ),
        static_argnums=2,
        out_shardings=replicated,
    )
    arrays = {name: _global_array(a, replicated) for name, a in dataset.arrays.items()}
    real_diversity = health.sample_diversity(
        np.asarray(jax.jit(lambda a: draw(a, make_keys(seed)["eval"], 512))(arrays))
    )

    def evaluate_now(state, step: int) -> dict[str, Any]:
        num = config.num_eval_samples if dataset.kind == "mixture" else NUM_GRID_SAMPLES
        x = np.asarray(sample(state.g_ema_params, state.g_model_state, num))
        diversity = health.sample_diversity(x)
        best = max((r["eval_diversity"] for r in history if "eval_diversity" in r), default=0.0)
        out: dict[str, Any] = {"eval_diversity": diversity}
        out["alarm_mode_collapse"] = int(health.mode_collapsed(diversity, best, real_diversity))
        path = os.path.join(workdir, f"samples_{step:07d}.png")
        if dataset.kind == "mixture":
            coverage = evaluate.mode_coverage(x, dataset.arrays["means"], dataset.std)
            if is_chief:
                plots.save_scatter(
                    path, x, dataset.arrays["means"],
                    title=f"{dataset.name} step {step}: {coverage['modes']:.0f} modes, "
                    f"{100 * coverage['high_quality']:.1f}% high quality, "
                    f"KL {coverage['reverse_kl']:.3f}",
                )  # fmt: skip
            # JSON has no inf: a KL with no high-quality sample is logged as null.
            out.update({f"eval_{n}": v if np.isfinite(v) else None for n, v in coverage.items()})
        elif is_chief:
            title = f"{dataset.name} step {step} (EMA generator, fixed noise)"
            plots.save_image_grid(path, x, models.output_range, title=title)
        return out

    # ------------------------------------------------------------ the loop
    writer = None
    if is_chief:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(workdir, purge_step=start_step + 1 if start_step else None)
    bar = tqdm(
        total=config.num_steps,
        initial=min(start_step, config.num_steps),
        desc=os.path.basename(workdir),
        dynamic_ncols=True,
        mininterval=1.0,
        disable=True if not is_chief else None,  # None: no bar unless stderr is a terminal
    )
    step = start_step
    saved = Saver(manager, log, start_step if restored is not None else None)
    status = 0
    # Alarms compare with earlier records: read them, so a resumed run logs the same.
    history = _read_records(metrics_path) if is_chief else []
    reference_g_grad = next((r["g_grad_norm"] for r in history if "g_grad_norm" in r), None)
    last_time, last_step = time.perf_counter(), step
    multi_process = jax.process_count() > 1
    metrics_file = open(metrics_path, "a") if is_chief else None
    try:
        with _SignalFlag(multi_process) as stop:
            while step < config.num_steps:
                if _should_stop(stop, step, multi_process):
                    break
                state, metrics = iterations(state, arrays)
                step += n_fused
                bar.update(n_fused)
                record: dict[str, Any] = {}
                if step % config.log_every == 0 or step == config.num_steps:
                    record.update(_to_python(metrics))
                    streak = record["skip_streak"]
                    if streak >= config.max_consecutive_skips:
                        raise TrainingError(
                            f"Training diverged: {streak} consecutive non-finite updates, "
                            f"steps {step - streak + 1} to {step} (all skipped). The last good "
                            f"checkpoint ({saved.describe()}) is intact. Try lower learning rates."
                        )
                    if reference_g_grad is None:
                        reference_g_grad = record["g_grad_norm"]
                    record["alarm_d_saturation"] = int(health.d_saturated(record, reference_g_grad))
                    now = time.perf_counter()
                    rate = (step - last_step) / max(now - last_time, 1e-9)
                    last_time, last_step = now, step
                    if writer is not None:
                        writer.add_scalar("steps_per_s", rate, step)
                    postfix = {
                        n: f"{record[n]:.3f}" for n in ("d_loss", "g_loss", "d_real", "d_fake")
                    }
                    if bar.disable:
                        log(
                            f"step {step}/{config.num_steps} ({rate:.1f} steps/s) "
                            + " ".join(f"{n}={v}" for n, v in postfix.items())
                        )
                    else:
                        bar.set_postfix(postfix, refresh=False)
                if step % config.eval_every == 0 or step == config.num_steps:
                    record.update(evaluate_now(state, step))
                for alarm, text in ALARMS.items():
                    if record.get(alarm):
                        log(f"warning: step {step}: {text}")
                if record and is_chief:
                    record = {"step": step, **record}
                    history.append(record)
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    for name, value in record.items():
                        if name != "step" and value is not None:
                            writer.add_scalar(name, value, step)
                if step % config.ckpt_every == 0 or step == config.num_steps:
                    saved.save(state, step)
            if step < config.num_steps:  # stopped early by a signal
                saved.save(state, step)
                saved.wait()
                name = signal.Signals(stop.signum or signal.SIGTERM).name
                log(
                    f"\n{name}: saved a checkpoint at step {step} in {workdir}; "
                    "rerun the same command to resume."
                )
                status = EXIT_SIGNAL_BASE + (stop.signum or signal.SIGTERM)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if metrics_file is not None:
            metrics_file.close()

    if status == 0:
        saved.wait()
        if is_chief:
            _final_report(config, workdir, dataset, metrics_path, log)
    return status


ALARMS = {
    "alarm_d_saturation": "D saturation: D is right on >= 99% of real and fake samples and "
    "G's gradient has vanished; G has stopped learning (try the non_saturating loss, a "
    "lower d_lr, or fewer d_steps).",
    "alarm_mode_collapse": "mode collapse: the samples' diversity fell below a quarter of the "
    "data's (try packing, --config.model.pack=2, or a lower g_lr).",
}


def _should_stop(stop: _SignalFlag, step: int, multi_process: bool) -> bool:
    """Whether to stop before the next step. Several processes agree on the step through
    JAX's preemption sync (polled every step, as it requires)."""
    if multi_process:
        from jax.experimental import multihost_utils

        return multihost_utils.reached_preemption_sync_point(step)
    return stop.signum is not None


class Saver:
    """Saves checkpoints asynchronously and reports each only once it is on disk."""

    def __init__(self, manager, log, step: int | None):
        self.manager, self.log = manager, log
        self.confirmed = step  # newest step known to be completely written
        self.pending: int | None = None

    def describe(self) -> str:
        return "none written yet" if self.confirmed is None else f"step {self.confirmed}"

    def wait(self) -> None:
        if self.pending is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise TrainingError(
                f"Writing the checkpoint at step {self.pending} failed: {e}. The newest complete "
                f"checkpoint is {self.describe()}."
            ) from e
        self.confirmed, self.pending = self.pending, None

    def save(self, state, step: int) -> None:
        if step in (self.confirmed, self.pending):
            return
        self.wait()  # the previous save must have succeeded before we claim a new one
        try:
            self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as e:
            raise TrainingError(
                f"Saving the checkpoint at step {step} failed: {e}. The newest complete "
                f"checkpoint is {self.describe()}."
            ) from e
        self.pending = step


def _read_records(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _final_report(config, workdir, dataset, metrics_path, log) -> None:
    records = _read_records(metrics_path)
    plots.save_curves(
        os.path.join(workdir, "losses.png"), records, ["d_loss", "g_loss"], "loss",
        title=f"{dataset.name}: losses ({config.loss})",
    )  # fmt: skip
    plots.save_curves(
        os.path.join(workdir, "d_outputs.png"), records, ["d_real", "d_fake"], "mean D",
        title=f"{dataset.name}: mean D(x) and D(G(z))",
    )  # fmt: skip
    log(f"Done: {config.num_steps} steps in {workdir}.")
    final = next((r for r in reversed(records) if "eval_modes" in r), None)
    if dataset.kind == "mixture" and final is not None:
        total = len(dataset.arrays["means"])
        log(
            f"Mode coverage of {dataset.name} at step {final['step']} "
            f"({config.num_eval_samples} samples, EMA generator):\n"
            f"  {'jaxgan (this run, 1 seed)':<38} {final['eval_modes']:>5.1f}/{total} modes  "
            f"{100 * final['eval_high_quality']:5.1f}% high quality  "
            f"KL {_or_inf(final['eval_reverse_kl']):.3f}"
        )
        for source, (modes, hq, kl) in evaluate.PUBLISHED_MODE_COVERAGE[dataset.name].items():
            log(f"  {source:<38} {modes:>5.1f}/{total} modes  {hq:5.1f}% high quality  KL {kl:.2f}")


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value
