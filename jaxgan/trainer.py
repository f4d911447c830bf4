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
import jax.numpy as jnp
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


def make_keys(seed: int | jax.Array) -> dict[str, jax.Array]:
    """The run's root keys, from the seed alone, with an explicit PRNG implementation.

    ``threefry2x32`` is named so that a global default (``jax_default_prng_impl``)
    cannot change a run's random numbers.
    """
    root = jax.random.key(seed, impl="threefry2x32")
    init, train, data, evaluation = jax.random.split(root, 4)
    return {"init": init, "train": train, "data": data, "eval": evaluation}


COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def compute_dtype(config: Any):
    """The networks' computation dtype (None: float32 throughout)."""
    return COMPUTE_DTYPES[config.get("compute_dtype", "float32")]


def validate_config(config: Any) -> None:
    """Raises RunError for values no run can use."""
    positive = ("batch_size", "d_steps", "log_every", "eval_every", "ckpt_every")
    positive += ("steps_per_dispatch", "max_consecutive_skips", "num_seeds")
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
    if config.pack < 1 or config.batch_size % config.pack:
        raise RunError(
            f"config.batch_size ({config.batch_size}) must be a multiple of config.pack "
            f"({config.pack})."
        )
    choices = {
        "loss": (config.loss, sorted(losses_lib.LOSSES)),
        "model.name": (config.model.name, list(models_lib.MODEL_NAMES)),
        "optimizer.name": (config.optimizer.name, ["adam", "sgd"]),
        "compute_dtype": (config.compute_dtype, list(COMPUTE_DTYPES)),
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


def _summarize(values: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON-ready metrics. One seed: plain numbers. Several seeds: the mean, its standard
    error (``NAME_se``) and every seed's value (``NAME_seeds``). Non-finite -> null."""

    def plain(x):
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.integer):
            return int(x)
        return float(x) if np.isfinite(x) else None

    out: dict[str, Any] = {}
    for name, value in values.items():
        value = np.asarray(value)
        if value.size == 1:
            out[name] = plain(value.reshape(()))
            continue
        as_float = value.astype(np.float64)
        out[name] = plain(as_float.mean())
        out[f"{name}_se"] = plain(as_float.std(ddof=1) / np.sqrt(value.size))
        out[f"{name}_seeds"] = [plain(v) for v in value]
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
    num_seeds = config.num_seeds

    def over_seeds(fn, in_axes=0):
        """``fn(..., seed)`` for the run's seed, or vmapped over its ``num_seeds`` seeds:
        seeds ``seed, seed + 1, ...`` trained together in one compiled program."""
        if num_seeds == 1:
            return lambda *args: fn(*args, seed)
        return lambda *args: jax.vmap(fn, in_axes=(*in_axes, 0))(
            *args, seed + jnp.arange(num_seeds)
        )

    # ------------------------------------------------------------ state: restore or create
    init_state = jax.jit(
        over_seeds(lambda s: state_lib.create_state(gan, make_keys(s)["init"]), in_axes=()),
        out_shardings=replicated,
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
        scan_d_steps=config.scan_d_steps,
        compute_dtype=compute_dtype(config),
    )
    draw = functools.partial(
        data_lib.sample_batch, dataset=dataset, value_range=models.output_range
    )

    def one_iteration(state, arrays, run_seed):
        keys = make_keys(run_seed)
        real = draw(arrays, jax.random.fold_in(keys["data"], state.step), k * batch)
        real = jax.lax.with_sharding_constraint(
            real.reshape(k, batch, *dataset.shape), batch_sharded
        )
        return train_step(state, real, keys["train"])

    step_all = over_seeds(one_iteration, in_axes=(0, None))

    @functools.partial(jax.jit, donate_argnums=0, out_shardings=(replicated, replicated))
    def iterations(state, arrays):
        """``steps_per_dispatch`` iterations in one program; metrics of the last one."""
        if n_fused == 1:
            return step_all(state, arrays)
        state, metrics = jax.lax.scan(lambda s, _: step_all(s, arrays), state, length=n_fused)
        return state, jax.tree.map(lambda m: m[-1], metrics)

    sample_fn = steps.make_sample_fn(gan, compute_dtype(config))
    eval_key = make_keys(seed)["eval"]  # the same fixed noise for every seed
    ema_state_fn = steps.make_ema_model_state_fn(
        gan, ema_decay=config.ema_decay, batch_size=config.batch_size,
        compute_dtype=compute_dtype(config),
    )  # fmt: skip

    @functools.partial(jax.jit, out_shardings=replicated)
    def ema_model_state(state):
        """BatchNorm statistics for the EMA generator (see make_standing_stats_fn)."""
        return over_seeds(lambda p, m, _: ema_state_fn(p, m), in_axes=(0, 0))(
            state.g_ema_params, state.g_model_state
        )

    sample = jax.jit(
        lambda params, model_state, num: over_seeds(
            lambda p, m, _: sample_fn(p, m, eval_key, num), in_axes=(0, 0)
        )(params, model_state),
        static_argnums=2,
        out_shardings=replicated,
    )
    arrays = {name: _global_array(a, replicated) for name, a in dataset.arrays.items()}

    # Image metrics (classifier FID/KID/score, Parzen, Stacked MNIST modes): built once.
    image_evaluator = None
    if config.eval_metrics and dataset.kind != "mixture":
        try:
            image_evaluator = evaluate.make_evaluator(
                config, dataset, output_range=models.output_range, parzen=config.eval_parzen,
                kid_subsets=10, log=log,
            )  # fmt: skip
            log(f"Image metrics every {config.eval_every} steps: {image_evaluator.protocol}")
        except evaluate.EvaluationError as e:
            log(f"warning: image metrics are off: {e}")

    @functools.partial(jax.jit, static_argnums=3, out_shardings=replicated)
    def sample_chunk(params, model_state, index, num):
        """Chunk ``index`` of the evaluation samples: EMA G, noise fold_in(eval key, index)."""
        key = jax.random.fold_in(eval_key, index)
        return over_seeds(lambda p, m, _: sample_fn(p, m, key, num), in_axes=(0, 0))(
            params, model_state
        )

    def image_metrics(state, model_state) -> dict[str, Any]:
        chunk = 500

        def samples_of_seed(i):
            def draw_samples(num):
                parts = [
                    np.asarray(sample_chunk(state.g_ema_params, model_state, c, chunk))
                    for c in range(-(-num // chunk))
                ]
                parts = [p[None] if num_seeds == 1 else p for p in parts]
                return np.concatenate([p[i] for p in parts])[:num]

            return draw_samples

        per_seed = [image_evaluator(samples_of_seed(i)) for i in range(num_seeds)]
        values = {n: np.array([r[n] for r in per_seed], np.float64) for n in per_seed[0]}
        return {f"eval_{n}": v for n, v in _summarize(values).items()}

    real_diversity = health.sample_diversity(
        np.asarray(jax.jit(lambda a: draw(a, make_keys(seed)["eval"], 512))(arrays))
    )

    def evaluate_now(state, step: int) -> dict[str, Any]:
        num = config.num_eval_samples if dataset.kind == "mixture" else NUM_GRID_SAMPLES
        model_state = ema_model_state(state)
        xs = np.asarray(sample(state.g_ema_params, model_state, num))
        xs = xs[None] if num_seeds == 1 else xs  # [seeds, num, ...]
        per_seed = [evaluate_samples(x, step) for x in xs]
        out = _summarize({name: np.array([r[name] for r in per_seed]) for name in per_seed[0]})
        if image_evaluator is not None:
            out.update(image_metrics(state, model_state))
        out["alarm_mode_collapse"] = int(any(r["alarm_mode_collapse"] for r in per_seed))
        x = xs[0]
        path = os.path.join(workdir, f"samples_{step:07d}.png")
        seed_note = f" (seed {seed} of {num_seeds})" if num_seeds > 1 else ""
        if dataset.kind == "mixture":
            coverage = per_seed[0]
            if is_chief:
                plots.save_scatter(
                    path, x, dataset.arrays["means"],
                    title=f"{dataset.name} step {step}{seed_note}: "
                    f"{coverage['eval_modes']:.0f} modes, "
                    f"{100 * coverage['eval_high_quality']:.1f}% high quality, "
                    f"KL {coverage['eval_reverse_kl']:.3f}",
                )  # fmt: skip
        elif is_chief:
            source = _generator_label(config)
            title = f"{dataset.name} step {step}{seed_note} ({source}, fixed noise)"
            plots.save_image_grid(path, x, models.output_range, title=title)
        return out

    def evaluate_samples(x, step: int) -> dict[str, float]:
        """One seed's evaluation of its samples (diversity alarm, mode coverage)."""
        diversity = health.sample_diversity(x)
        # The best diversity seen earlier (the mean over seeds when several are trained).
        best = max((r["eval_diversity"] for r in history if "eval_diversity" in r), default=0.0)
        out = {"eval_diversity": diversity}
        out["alarm_mode_collapse"] = int(health.mode_collapsed(diversity, best, real_diversity))
        if dataset.kind == "mixture":
            coverage = evaluate.mode_coverage(x, dataset.arrays["means"], dataset.std)
            out.update({f"eval_{n}": v for n, v in coverage.items()})
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
                    raw = {n: np.asarray(v) for n, v in jax.device_get(metrics).items()}
                    record.update(_summarize(raw))
                    streak = int(raw["skip_streak"].max())
                    if streak >= config.max_consecutive_skips:
                        raise TrainingError(
                            f"Training diverged: {streak} consecutive non-finite updates, "
                            f"steps {step - streak + 1} to {step} (all skipped). The last good "
                            f"checkpoint ({saved.describe()}) is intact. Try lower learning rates."
                        )
                    if reference_g_grad is None:  # the first finite G gradient norm logged
                        reference_g_grad = record["g_grad_norm"]
                    record["alarm_d_saturation"] = int(
                        reference_g_grad is not None
                        and any(
                            health.d_saturated({n: raw[n].flat[i] for n in raw}, reference_g_grad)
                            for i in range(num_seeds)
                        )
                    )
                    now = time.perf_counter()
                    rate = (step - last_step) / max(now - last_time, 1e-9)
                    last_time, last_step = now, step
                    if writer is not None:
                        writer.add_scalar("steps_per_s", rate, step)
                    postfix = {
                        n: "nan" if record[n] is None else f"{record[n]:.3f}"
                        for n in ("d_loss", "g_loss", "d_real", "d_fake")
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
                        if name != "step" and isinstance(value, (int, float)):
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
    "data's (try packing, --config.pack=2, or a lower g_lr).",
}


def _should_stop(stop: _SignalFlag, step: int, multi_process: bool) -> bool:
    """Whether to stop before the next step. Several processes agree on the step through
    JAX's preemption sync (polled every step, as it requires)."""
    if multi_process:
        from jax.experimental import multihost_utils

        return multihost_utils.reached_preemption_sync_point(step)
    return stop.signum is not None


_all_finite = jax.jit(steps.all_finite)


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
        if not bool(_all_finite(state)):
            # The train step skips updates whose losses, gradients or BatchNorm statistics
            # are not finite; an update that overflows by itself is caught here.
            raise TrainingError(
                f"The training state at step {step} is not finite (a parameter or optimizer "
                f"state overflowed), so it was not saved. The newest complete checkpoint is "
                f"{self.describe()}. Try lower learning rates."
            )
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
        seeds = config.num_seeds

        def pm(name, scale=1.0, digits=1):
            value = f"{scale * _or_inf(final[name]):.{digits}f}"
            if f"{name}_se" in final and final[f"{name}_se"] is not None:
                value += f"±{scale * final[f'{name}_se']:.{digits}f}"
            return value

        label = f"jaxgan (this run, {seeds} seed{'s' if seeds > 1 else ''})"
        log(
            f"Mode coverage of {dataset.name} at step {final['step']} "
            f"({config.num_eval_samples} samples, {_generator_label(config)}"
            f"{', mean ± s.e. over seeds' if seeds > 1 else ''}):\n"
            f"  {label:<38} {pm('eval_modes'):>9}/{total} modes  "
            f"{pm('eval_high_quality', 100)}% high quality  KL {pm('eval_reverse_kl', digits=3)}"
        )
        for source, (modes, hq, kl) in evaluate.PUBLISHED_MODE_COVERAGE[dataset.name].items():
            log(f"  {source:<38} {modes:>9.1f}/{total} modes  {hq:.1f}% high quality  KL {kl:.2f}")


def _generator_label(config) -> str:
    """What the evaluation samples come from: the EMA of G's parameters, or G itself."""
    return "EMA generator" if config.ema_decay > 0 else "generator (ema_decay 0: no EMA)"


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value
