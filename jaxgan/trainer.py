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
from tqdm import tqdm

from jaxgan import checkpointing, evaluate, plots, steps
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
    for name in positive:
        value = config[name]
        if not isinstance(value, int) or value < 1:
            raise RunError(f"config.{name} must be a positive integer, got {value!r}.")
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
    """Records SIGINT/SIGTERM instead of dying, so the loop can save and exit cleanly."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_and_evaluate(config: Any, workdir: str, *, log=print) -> int:
    """Trains (or resumes) the run in ``workdir``; returns the process exit status.

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
    dataset = data_lib.load(config.data)
    try:
        gan = state_lib.build_gan(config, dataset.shape)
    except ValueError as e:  # e.g. a network that cannot produce this data's shape
        raise RunError(f"{e}: choose a model for {dataset.name!r} data.") from e
    keys = make_keys(config.seed)

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

    abstract_state = jax.eval_shape(functools.partial(state_lib.create_state, gan), keys["init"])
    os.makedirs(workdir, exist_ok=True)
    manager = checkpointing.open_manager(workdir, keep=config.keep_checkpoints)
    try:
        return _train(config, workdir, dataset, gan, keys, manager, abstract_state, log)
    finally:
        # Never leave with a checkpoint half written, whatever happened.
        manager.wait_until_finished()
        manager.close()


def _train(config, workdir, dataset, gan, keys, manager, abstract_state, log) -> int:
    restored = checkpointing.restore(manager, abstract_state, workdir, warn=log)
    if restored is None:
        state, start_step = state_lib.create_state(gan, keys["init"]), 0
    else:
        state, start_step = restored
        log(f"Resuming {workdir} from the checkpoint at step {start_step}.")
    metrics_path = os.path.join(workdir, METRICS_FILE)
    _truncate_metrics(metrics_path, start_step)

    models = gan.models
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
    info_path = os.path.join(workdir, RUN_INFO_FILE)
    sessions = checkpointing.read_json(info_path)["sessions"] if os.path.exists(info_path) else []
    sessions.append(_run_info(config, dataset, start_step))
    checkpointing.write_json_atomic(info_path, {"sessions": sessions})

    # ------------------------------------------------------------ compiled functions
    k, batch = config.d_steps, config.batch_size
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

    @functools.partial(jax.jit, donate_argnums=0)
    def iteration(state, arrays, train_key, data_key):
        real = draw(arrays, jax.random.fold_in(data_key, state.step), k * batch)
        return train_step(state, real.reshape(k, batch, *dataset.shape), train_key)

    sample = jax.jit(steps.make_sample_fn(gan), static_argnums=3)
    arrays = jax.device_put(dataset.arrays)  # once: batches are drawn on device

    def evaluate_now(state, step: int) -> dict[str, float]:
        if dataset.kind == "mixture":
            x = np.asarray(
                sample(
                    state.g_ema_params, state.g_model_state, keys["eval"], config.num_eval_samples
                )
            )
            coverage = evaluate.mode_coverage(x, dataset.arrays["means"], dataset.std)
            plots.save_scatter(
                os.path.join(workdir, f"samples_{step:07d}.png"),
                x,
                dataset.arrays["means"],
                title=f"{dataset.name} step {step}: {coverage['modes']:.0f} modes, "
                f"{100 * coverage['high_quality']:.1f}% high quality, "
                f"KL {coverage['reverse_kl']:.3f}",
            )
            # JSON has no inf: a KL with no high-quality sample is logged as null.
            return {
                f"eval_{name}": value if np.isfinite(value) else None
                for name, value in coverage.items()
            }
        x = sample(state.g_ema_params, state.g_model_state, keys["eval"], NUM_GRID_SAMPLES)
        plots.save_image_grid(
            os.path.join(workdir, f"samples_{step:07d}.png"),
            np.asarray(x),
            models.output_range,
            title=f"{dataset.name} step {step} (EMA generator, fixed noise)",
        )
        return {}

    # ------------------------------------------------------------ the loop
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(workdir, purge_step=start_step + 1 if start_step else None)
    bar = tqdm(
        total=config.num_steps,
        initial=min(start_step, config.num_steps),
        desc=os.path.basename(workdir),
        dynamic_ncols=True,
        mininterval=1.0,
        disable=None,  # no bar when stderr is not a terminal; plain log lines instead
    )
    step = start_step
    saved_step = start_step if restored is not None else None
    status = 0
    last_time, last_step = time.perf_counter(), step
    try:
        with _SignalFlag() as stop, open(metrics_path, "a") as metrics_file:
            while step < config.num_steps:
                if stop.signum is not None:
                    break
                state, metrics = iteration(state, arrays, keys["train"], keys["data"])
                step += 1
                bar.update(1)
                record: dict[str, Any] = {}
                if step % config.log_every == 0 or step == config.num_steps:
                    record.update(_to_python(metrics))
                    streak = record["skip_streak"]
                    if streak >= config.max_consecutive_skips:
                        raise TrainingError(
                            f"Training diverged: {streak} consecutive non-finite updates, "
                            f"steps {step - streak + 1} to {step} (all skipped). The last good "
                            f"checkpoint (step {saved_step}) is intact. Try lower learning rates."
                        )
                    now = time.perf_counter()
                    rate = (step - last_step) / max(now - last_time, 1e-9)
                    last_time, last_step = now, step
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
                if record:
                    record = {"step": step, **record}
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    for name, value in record.items():
                        if name != "step" and value is not None:
                            writer.add_scalar(name, value, step)
                if step % config.ckpt_every == 0 or step == config.num_steps:
                    _save(manager, state, step)
                    saved_step = step
            if stop.signum is not None:
                if saved_step != step:
                    _save(manager, state, step)
                manager.wait_until_finished()
                name = signal.Signals(stop.signum).name
                log(
                    f"\n{name}: saved a checkpoint at step {step} in {workdir}; "
                    "rerun the same command to resume."
                )
                status = EXIT_SIGNAL_BASE + stop.signum
    finally:
        bar.close()
        writer.close()

    if status == 0:
        manager.wait_until_finished()
        _final_report(config, workdir, dataset, metrics_path, log)
    return status


def _save(manager, state, step: int) -> None:
    import orbax.checkpoint as ocp

    try:
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
    except Exception as e:
        raise TrainingError(f"Saving the checkpoint at step {step} failed: {e}") from e


def _final_report(config, workdir, dataset, metrics_path, log) -> None:
    records = []
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            records = [json.loads(line) for line in f if line.strip()]
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
