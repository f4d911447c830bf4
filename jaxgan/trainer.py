"""The training loop: data on device, the jitted step, evaluation, logging, checkpoints.

``train_and_evaluate(config, workdir)`` is the whole job; ``train.py`` only parses flags
and calls it. It reads top to bottom as :func:`_train` does: restore or create the state
(:class:`_Program` holds the compiled functions), then the loop, in which the periodic work
is done by two small objects, :class:`_Monitor` (the progress bar, log lines,
``metrics.jsonl``, TensorBoard, alarms) and :class:`_Evaluation` (samples, their metrics,
pictures), and by :class:`jaxgan.checkpointing.Saver`. This module and the command lines
are the only ones that read clocks and handle signals.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tensorboardX import SummaryWriter
from tqdm import tqdm

from jaxgan import (
    checkpointing,
    evaluators,
    files,
    hardware,
    health,
    metrics,
    plots,
    run_folder,
    sampling,
)
from jaxgan import data as data_lib
from jaxgan import losses as losses_lib
from jaxgan import models as models_lib
from jaxgan import state as state_lib
from jaxgan import steps as steps_lib
from jaxgan.data import streaming
from jaxgan.errors import (
    EXIT_SIGNAL_BASE,
    ConfigError,
    EvaluationError,
    RunError,
    TrainingError,
)

__all__ = ["RunError", "TrainingError", "train_and_evaluate", "validate_config"]

NUM_GRID_SAMPLES = 64  # images in each samples_<step>.png
TRAINING_KID_SUBSETS = 10  # KID during training: a quick look (jaxgan.evaluate uses 100)


def validate_config(config: Any) -> None:
    """Raises ConfigError for values no run can use."""
    positive = ("batch_size", "d_steps", "log_every", "eval_every", "ckpt_every")
    positive += ("steps_per_dispatch", "max_consecutive_skips", "num_seeds")
    for name in positive:
        value = config[name]
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"config.{name} must be a positive integer, got {value!r}.")
    for name in ("log_every", "eval_every", "ckpt_every", "num_steps"):
        if config[name] % config.steps_per_dispatch:
            raise ConfigError(
                f"config.{name} ({config[name]}) must be a multiple of "
                f"config.steps_per_dispatch ({config.steps_per_dispatch})."
            )
    if config.num_steps < 0:
        raise ConfigError(f"config.num_steps must be >= 0, got {config.num_steps}.")
    if config.pack < 1 or config.batch_size % config.pack:
        raise ConfigError(
            f"config.batch_size ({config.batch_size}) must be a multiple of config.pack "
            f"({config.pack})."
        )
    choices = {
        "loss": (config.loss, sorted(losses_lib.LOSSES)),
        "model.name": (config.model.name, list(models_lib.MODEL_NAMES)),
        "optimizer.name": (config.optimizer.name, ["adam", "sgd"]),
        "compute_dtype": (config.compute_dtype, list(state_lib.COMPUTE_DTYPES)),
        "model.conv": (config.model.conv, list(hardware.CONV_CHOICES)),
        "model.d_norm": (config.model.d_norm, list(models_lib.D_NORMS)),
        "penalty_per": (config.penalty_per, list(steps_lib.PENALTY_UNITS)),
        "optimizer.schedule_per": (config.optimizer.schedule_per, ["iteration", "update"]),
        "data.loader": (config.data.get("loader", "auto"), list(data_lib.IMAGE_LOADERS)),
    }
    for field, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"Unknown config.{field} {value!r}; choose one of {allowed}.")
    for name in ("image_size", "memory_budget_bytes"):
        value = config.data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"config.data.{name} must be an integer >= 0 (0: "
                + ("the images as stored" if name == "image_size" else "half the device's memory")
                + f"), got {value!r}."
            )
    if not 0.0 <= config.ema_decay < 1.0:
        raise ConfigError(f"config.ema_decay must be in [0, 1), got {config.ema_decay}.")
    for name in ("g_lr", "d_lr"):
        if not config[name] > 0:
            raise ConfigError(f"config.{name} must be positive, got {config[name]}.")
    for name in ("gp_weight", "r1_gamma", "r2_gamma"):
        if not config[name] >= 0:
            raise ConfigError(f"config.{name} must be >= 0 (0 turns it off), got {config[name]}.")


def config_warnings(config: Any) -> list[str]:
    """Settings that run but are probably not what was meant."""
    out = []
    if config.loss == "wasserstein" and not config.gp_weight:
        out.append(
            "warning: the wasserstein loss without a Lipschitz constraint (gp_weight 0) is not "
            "the Wasserstein distance: D's scores can grow without bound. Set "
            "--config.gp_weight=10 (WGAN-GP, Gulrajani et al. 2017)."
        )
    return out


def train_and_evaluate(
    config: Any, workdir: str, *, log=print, given: Collection[str] | None = None
) -> int:
    """Trains (or resumes) the run in ``workdir``; returns the process exit status.

    Data-parallel over every device of every process (``jax.distributed`` must be
    initialized first for several processes): the batch is sharded over a 1-D mesh,
    parameters and optimizer states are replicated, and BatchNorm statistics are
    those of the global batch. Only process 0 writes logs, metrics and pictures; all
    processes write their part of each checkpoint.

    Args:
      config: the run's config (a preset's, with the user's changes).
      workdir: the run folder; created, or resumed when it holds a run.
      log: where messages for the user go.
      given: the fields the user set (the command line's ``--config.FIELD=``). A run
        written before a field existed continues with that field's legacy value unless
        it is among them (:func:`jaxgan.run_folder.predated_fields`). None: the whole
        config is the caller's choice, and a changed default is refused, naming it.

    Returns:
      0 when ``num_steps`` were reached; ``128 + signum`` when SIGINT/SIGTERM stopped
      the run after saving a checkpoint of the step reached.

    Raises:
      jaxgan.errors.JaxganError: bad config, unusable run folder or data, or training
        that cannot go on (TrainingError). The message is one line meant for the user;
        nothing in the run folder is lost.
    """
    validate_config(config)
    workdir = os.path.abspath(workdir)
    if config.batch_size % jax.device_count():
        raise ConfigError(
            f"config.batch_size ({config.batch_size}) must be a multiple of the number of "
            f"devices ({jax.device_count()}): the batch is split evenly across them."
        )
    lock = _lock(workdir, log)  # before anything else: a second trainer is refused at once
    quiet = _OrbaxErrorFilter()
    logging.getLogger("absl").addFilter(quiet)
    try:
        loader, why = data_lib.choose_loader(config.data)
        loader = _from_process_0(loader)  # every process streams, or none does
        log(f"data: {loader} loader ({why})")
        dataset = data_lib.load(config.data, stream=loader == "grain")
        if given is not None:
            predated = run_folder.predated_fields(workdir, config, given)
            if predated:
                values = ", ".join(f"{k}={v!r}" for k, v in predated.items())
                log(f"{workdir} was written before these fields existed; it continues as it "
                    f"was trained, with {values}.")  # fmt: skip
                config = run_folder.with_fields(config, predated)
        config = _resolve_conv(config, workdir, log)
        config = run_folder.check_can_resume(workdir, config, dataset)
        _check_processes_agree(config, dataset)
        try:
            gan = state_lib.build_gan(config, dataset.shape, dataset.num_classes)
        except ValueError as e:  # e.g. a network that cannot produce this data's shape
            raise ConfigError(f"{e}: choose a model for {dataset.name!r} data.") from e
        try:
            program = _Program(config, dataset, gan)
        except ValueError as e:  # e.g. a gradient penalty through BatchNorm
            raise ConfigError(str(e)) from e
        for warning in config_warnings(config):
            log(warning)
        manager = checkpointing.open_manager(
            workdir, keep=config.keep_checkpoints, loader_position=program.streamed
        )
        failed = True
        try:
            status = _train(config, workdir, dataset, gan, program, manager, log)
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
    finally:
        logging.getLogger("absl").removeFilter(quiet)
        lock.release()


def _resolve_conv(config, workdir: str, log) -> Any:
    """``config`` with ``model.conv = "auto"`` replaced by a formulation, which the run
    records: a run being resumed keeps its own, a new run takes the platform's
    (:func:`jaxgan.hardware.choose_conv`). The choice is printed for networks with
    convolutions."""
    if config.model.conv != "auto":
        return config
    saved = run_folder.saved_field(workdir, "model.conv")
    if saved in models_lib.CONV_FORMULATIONS:
        choice, why = saved, "the formulation this run was trained with"
    else:
        choice, why = hardware.choose_conv(config.model.name)
    if config.model.name in models_lib.CONV_MODELS:
        log(f"model.conv: auto -> {choice} ({why}; --config.model.conv=fast|lax to choose)")
    return run_folder.with_fields(config, {"model.conv": choice})


class _OrbaxErrorFilter(logging.Filter):
    """Orbax logs a failed asynchronous write as several tracebacks from its threads; the
    trainer reports it once, as one line naming the newest complete checkpoint
    (:class:`jaxgan.checkpointing.Saver`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not (from_orbax and record.levelno >= logging.ERROR)


def _lock(workdir: str, log) -> run_folder.RunLock:
    """The run folder's lock, taken by process 0; every process agrees on the outcome."""
    lock = run_folder.RunLock(workdir)
    refusal = ""
    if jax.process_index() == 0:
        try:
            note = lock.acquire()
        except RunError as e:
            refusal = str(e)
        else:
            if note:
                log(note)
    refusal = _from_process_0(refusal)
    if refusal:
        raise RunError(refusal)
    return lock


_TEXT_BYTES = 8192


def _encode(text: str) -> np.ndarray:
    data = np.zeros(_TEXT_BYTES, np.uint8)
    raw = text.encode()[:_TEXT_BYTES]
    data[: len(raw)] = np.frombuffer(raw, np.uint8)
    return data


def _decode(data) -> str:
    return bytes(np.asarray(data, np.uint8)).rstrip(b"\0").decode(errors="replace")


def _from_process_0(text: str) -> str:
    """Process 0's ``text``, on every process."""
    if jax.process_count() == 1:
        return text
    return _decode(multihost_utils.broadcast_one_to_all(_encode(text)))


def _check_processes_agree(config, dataset: data_lib.Dataset) -> None:
    """Every process must train the same config on the same data, or the replicated
    arrays silently diverge: a process that differs from process 0 stops the run, on
    every process, with a message naming its host and the fields that differ."""
    if jax.process_count() == 1:
        return
    mine = run_folder.run_identity(config.to_dict(), dataset.fingerprint)
    mine = {k: v for k, v in mine.items() if k not in run_folder.ALLOWED_TO_CHANGE}
    reference = json.loads(_from_process_0(json.dumps(mine, sort_keys=True, default=str)))
    differing = sorted(k for k in set(mine) | set(reference) if mine.get(k) != reference.get(k))
    report = f"{socket.gethostname()}: {', '.join(differing)}" if differing else ""
    reports = multihost_utils.process_allgather(_encode(report))
    bad = [(i, _decode(r)) for i, r in enumerate(np.asarray(reports)) if _decode(r)]
    if bad:
        where = "; ".join(f"process {i} on {text}" for i, text in bad)
        raise ConfigError(
            f"The processes do not train the same run: {where} differ from process 0. Start "
            "every process with the same command and the same data."
        )


def _train(config, workdir, dataset, gan, program, manager, log) -> int:
    is_chief = jax.process_index() == 0
    if not is_chief:
        log = lambda *_: None

    # ------------------------------------------------------------ state: restore or create
    restored = checkpointing.restore(manager, program.abstract_state, workdir, warn=log)
    if restored is None:
        state, start_step = program.init_state(), 0
    else:
        state, start_step, unreadable = restored
        if unreadable:  # moved aside by one process, then every process sees the same
            if is_chief:
                checkpointing.move_aside(workdir, unreadable, warn=log)
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices("jaxgan: unreadable checkpoints moved")
            manager.reload()
        if start_step >= config.num_steps:
            log(
                f"{workdir} is already trained to step {start_step} and config.num_steps is "
                f"{config.num_steps}: nothing to do. Pass a larger --config.num_steps to train "
                "on."
            )
            return 0
        log(f"Resuming {workdir} from the checkpoint at step {start_step}.")
        if start_step % config.steps_per_dispatch:
            raise RunError(
                f"The checkpoint at step {start_step} is not a multiple of "
                f"config.steps_per_dispatch={config.steps_per_dispatch}; resume with "
                "steps_per_dispatch=1."
            )
    if is_chief:
        run_folder.truncate_metrics(workdir, start_step)
        run_folder.write_config(workdir, config, dataset)
        warning = run_folder.record_session(workdir, config, dataset, start_step)
        if warning:
            log(warning)

    # ------------------------------------------------------------ the loop
    feed = arrays = None
    if program.streamed:  # the Grain loader, at the checkpoint's position
        feed = program.feed(config)
        saved = None if restored is None else checkpointing.loader_position(manager, start_step)
        feed.start(start_step, saved)
    else:
        arrays = program.place(dataset.arrays)
    real = program.real_samples(arrays, feed=feed)
    evaluation = _Evaluation(config, dataset, gan, real, workdir, log)
    monitor = _Monitor(config, workdir, start_step, is_chief, log)
    saver = checkpointing.Saver(manager, start_step if restored is not None else None)
    step, n_fused, multi_process = start_step, config.steps_per_dispatch, jax.process_count() > 1
    longest, in_flight = program.no_streak(), None
    try:
        with _SignalFlag(multi_process) as stop:
            while step < config.num_steps:
                if _should_stop(stop, step, multi_process):
                    break
                batches = arrays if feed is None else next(feed)
                state, step_metrics, longest = program.iterations(state, batches, longest)
                # At most one dispatch ahead of the device: a signal is answered within a
                # step, and the progress bar's rate is the device's, not the dispatcher's.
                if in_flight is not None:
                    in_flight.block_until_ready()
                in_flight = step_metrics["finite"]
                step += n_fused
                monitor.advance(n_fused)
                saver.poll()  # a failed write is reported at once, not at the next save
                record: dict[str, Any] = {}
                if _due(step, config.log_every, config.num_steps):
                    monitor.check_skips(longest, saver)
                    record.update(monitor.measure(step, step_metrics))
                if _due(step, config.eval_every, config.num_steps):
                    record.update(evaluation(state, step, monitor.best("eval_diversity")))
                monitor.write(step, record)
                if _due(step, config.ckpt_every, config.num_steps):
                    saver.save(state, step, None if feed is None else feed.position(step))
            if step < config.num_steps:  # stopped early by a signal
                saver.save(state, step, None if feed is None else feed.position(step))
                saver.wait()
                # Several processes stop together through JAX's preemption service (SIGTERM),
                # whichever signal one of them got: all exit with the same status, 143.
                signum = signal.SIGTERM if multi_process else stop.signum or signal.SIGTERM
                log(
                    f"\n{signal.Signals(signum).name}: saved a checkpoint at step {step} in "
                    f"{workdir}; rerun the same command to resume."
                )
                return EXIT_SIGNAL_BASE + signum
    finally:
        monitor.close()
    saver.wait()
    if is_chief:
        _final_report(config, workdir, dataset, evaluation, log)
    return 0


def _due(step: int, every: int, num_steps: int) -> bool:
    return step % every == 0 or step == num_steps


def _longer_streak(longest, streak: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
    """The longest run of consecutive skipped updates: ``{"length", "end"}`` (its last
    step), per seed, updated with the current ``streak`` at ``step``."""
    if longest is None:
        return {"length": streak, "end": step}
    longer = streak > longest["length"]
    return {
        "length": jnp.where(longer, streak, longest["length"]),
        "end": jnp.where(longer, step, longest["end"]),
    }


# ============================================================================
# The compiled functions
# ============================================================================


class _Program:
    """The run's compiled functions over one data-parallel mesh of every device.

    ``iterations(state, arrays) -> (state, metrics)`` runs ``steps_per_dispatch``
    iterations in one program, for every seed of the run (vmapped when ``num_seeds >
    1``), each drawing its real batches on device from ``(seed, step)``.
    """

    def __init__(self, config, dataset: data_lib.Dataset, gan: state_lib.GAN):
        self.mesh = mesh = Mesh(np.array(jax.devices()), ("data",))
        self.replicated = replicated = NamedSharding(mesh, P())
        batch_sharded = NamedSharding(mesh, P(None, "data"))
        seed, num_seeds = config.seed, config.num_seeds
        k, batch, n_fused = config.d_steps, config.batch_size, config.steps_per_dispatch
        self.seed, self.dataset, self.gan = seed, dataset, gan
        self.init_state = jax.jit(
            state_lib.make_init_fn(gan, seed, num_seeds), out_shardings=replicated
        )
        self.abstract_state = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
            jax.eval_shape(self.init_state),
        )
        train_step = steps_lib.make_train_step_for(gan, config)
        self.draw = functools.partial(
            data_lib.sample_batch, dataset=dataset, value_range=gan.models.output_range
        )

        draw_batches = steps_lib.make_batch_sampler(
            dataset, d_steps=k, batch_size=batch, value_range=gan.models.output_range,
            labels=gan.models.conditional,
        )  # fmt: skip
        # Streamed (the Grain loader): ``arrays`` are the uint8 batches of the dispatch,
        # (n_fused, [num_seeds,] k, batch, ...), read on the host (jaxgan.data.streaming).
        self.streamed = streamed = dataset.source is not None
        to_floats = lambda u8: data_lib.pixels_to_floats(u8, gan.models.output_range)

        def one_iteration(state, arrays, run_seed):
            keys = state_lib.make_keys(run_seed)
            if streamed:
                real = (to_floats(arrays[0]), arrays[1]) if isinstance(arrays, tuple) else (
                    to_floats(arrays))  # fmt: skip
            else:
                real = draw_batches(arrays, jax.random.fold_in(keys["data"], state.step))
            real = jax.lax.with_sharding_constraint(real, batch_sharded)
            return train_step(state, real, keys["train"])

        if num_seeds == 1:
            step_all = lambda state, arrays: one_iteration(state, arrays, seed)
        else:  # seeds seed, seed + 1, ... trained together in one compiled program
            step_all = lambda state, arrays: jax.vmap(
                one_iteration, in_axes=(0, 0 if streamed else None, 0)
            )(state, arrays, seed + jnp.arange(num_seeds))

        @functools.partial(jax.jit, donate_argnums=(0, 2), out_shardings=replicated)
        def iterations(state, arrays, longest):
            """``steps_per_dispatch`` iterations in one program: the new state, the metrics
            of the last iteration, and the longest run of skipped updates so far."""

            def one(carry, batches):
                state, longest = carry
                state, metrics = step_all(state, arrays if batches is None else batches)
                return (state, _longer_streak(longest, state.skip_streak, state.step)), metrics

            if n_fused == 1:
                first = jax.tree.map(lambda a: a[0], arrays) if streamed else None
                (state, longest), metrics = one((state, longest), first)
            else:
                xs = arrays if streamed else None
                (state, longest), metrics = jax.lax.scan(one, (state, longest), xs, length=n_fused)
                metrics = jax.tree.map(lambda m: m[-1], metrics)
            return state, metrics, longest

        self.iterations = iterations
        zeros = lambda: jnp.zeros(self.abstract_state.skip_streak.shape, jnp.int32)
        # ``{"length", "end"}`` of the longest run of skipped updates (per seed), on device.
        self.no_streak = jax.jit(
            lambda: _longer_streak(None, zeros(), zeros()), out_shardings=replicated
        )

    def place(self, host_arrays: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """The dataset on every device, once, from identical host copies on every process."""
        place = lambda a: jax.make_array_from_callback(a.shape, self.replicated, a.__getitem__)
        return {name: place(a) for name, a in host_arrays.items()}

    def feed(self, config) -> streaming.Feed:
        """The streamed batches of the run (the Grain loader), not yet positioned."""
        return streaming.Feed(
            self.dataset, seed=config.seed, num_seeds=config.num_seeds,
            d_steps=config.d_steps, batch_size=config.batch_size,
            steps_per_dispatch=config.steps_per_dispatch, num_steps=config.num_steps,
            labels=self.gan.models.conditional, mesh=self.mesh,
        )  # fmt: skip

    def real_samples(self, arrays, num: int = 512, feed: streaming.Feed | None = None):
        """``num`` real examples (the reference of the mode-collapse alarm), numpy."""
        key = state_lib.make_keys(self.seed)["eval"]
        if feed is not None:
            return feed.sample(key, num, self.gan.models.output_range)
        return np.asarray(jax.jit(lambda a: self.draw(a, key, num))(arrays))


# ============================================================================
# Evaluation: samples, their metrics, pictures
# ============================================================================


class _Evaluation:
    """Every ``eval_every`` steps: samples of each seed's EMA generator, their metrics and
    the diversity alarm, and a picture (``samples_<step>.png``).

    The samples come from :class:`jaxgan.sampling.Sampler` with noise seed
    :data:`jaxgan.sampling.EVAL_NOISE_SEED`: the samples ``python -m jaxgan.evaluate`` and
    ``jaxgan.sample`` draw from the same checkpoint, so their numbers agree.
    """

    def __init__(self, config, dataset, gan, real_samples: np.ndarray, workdir: str, log):
        self.config, self.dataset, self.workdir, self.log = config, dataset, workdir, log
        self.output_range = gan.models.output_range
        self.is_chief = jax.process_index() == 0
        self.sampler = sampling.Sampler.for_config(gan, config)
        self.real_diversity = health.sample_diversity(real_samples)
        self.evaluator = None
        if dataset.kind == "mixture":
            self.evaluator = evaluators.make_evaluator(
                dataset, output_range=self.output_range, num_samples=config.num_eval_samples
            )
        elif config.eval_metrics:  # classifier FID/KID/score, Parzen, Stacked MNIST modes
            try:
                self.evaluator = evaluators.make_evaluator(
                    dataset, output_range=self.output_range, idx_dir=config.data.idx_dir,
                    parzen=config.eval_parzen, kid_subsets=TRAINING_KID_SUBSETS, log=log,
                    num_classes=gan.models.num_classes,
                )  # fmt: skip
                log(f"Image metrics every {config.eval_every} steps: {self.evaluator.protocol}")
            except EvaluationError as e:
                log(f"warning: image metrics are off: {e}")

    def __call__(self, state, step: int, best_diversity: float) -> dict[str, Any]:
        num_seeds = self.config.num_seeds
        per_seed = [
            self._one_seed(state_lib.seed_state(state, i, num_seeds), best_diversity)
            for i in range(num_seeds)
        ]
        results = [result for result, _, _ in per_seed]
        out = _summarize({name: np.array([r[name] for r in results]) for name in results[0]})
        out["alarm_mode_collapse"] = int(any(collapsed for _, collapsed, _ in per_seed))
        if self.is_chief:
            self._picture(per_seed[0][2], step, results[0])
        return out

    def _one_seed(self, state, best_diversity: float):
        """``(metrics, collapsed, samples shown)`` of one seed's state."""
        variables = self.sampler.variables(state)
        draw = lambda num: self.sampler(*variables, num, sampling.EVAL_NOISE_SEED)
        mixture = self.dataset.kind == "mixture"
        x = draw(self.config.num_eval_samples if mixture else self._grid_size())
        diversity = health.sample_diversity(x)
        result = {"eval_diversity": diversity}
        if self.evaluator is not None:  # 2-D data: the same samples; images: their own
            scores = self.evaluator(
                lambda num: x if num == len(x) else draw(num), self.sampler.labels_for
            )
            result.update({f"eval_{name}": value for name, value in scores.items()})
        collapsed = health.mode_collapsed(diversity, best_diversity, self.real_diversity)
        return result, collapsed, x

    def _grid_size(self) -> int:
        """Images in a picture: :data:`NUM_GRID_SAMPLES`, or for a class-conditional G whole
        rows of one sample per class (labels ``0, 1, ..., C-1`` in every row)."""
        classes = self.sampler.models.num_classes
        return classes * math.ceil(NUM_GRID_SAMPLES / classes) if classes else NUM_GRID_SAMPLES

    def _picture(self, x: np.ndarray, step: int, first: dict[str, Any]) -> None:
        config, dataset = self.config, self.dataset
        path = os.path.join(self.workdir, f"samples_{step:07d}.png")
        seed_note = f" (seed {config.seed} of {config.num_seeds})" if config.num_seeds > 1 else ""
        if dataset.kind == "mixture":
            plots.save_scatter(
                path, x, dataset.arrays["means"], std=dataset.std,
                title=f"{dataset.name} step {step}{seed_note}: {first['eval_modes']:.0f} modes, "
                f"{100 * first['eval_high_quality']:.1f}% high quality, "
                f"KL {first['eval_reverse_kl']:.3f}",
            )  # fmt: skip
        else:
            label = sampling.generator_label(config.ema_decay)
            title = f"{dataset.name} step {step}{seed_note} ({label}, fixed noise)"
            classes = self.sampler.models.num_classes or None
            if classes:
                title = title[:-1] + "; column c: class c)"
            plots.save_image_grid(path, x, self.output_range, title=title, ncols=classes)


def _summarize(values: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON-ready metrics. One seed: plain numbers. Several seeds: the mean, its standard
    error (``NAME_se``) and every seed's value (``NAME_seeds``). Non-finite -> null."""
    plain = lambda x: files.json_ready(np.asarray(x).reshape(())[()])
    out: dict[str, Any] = {}
    for name, value in values.items():
        value = np.asarray(value)
        if value.size == 1:
            out[name] = plain(value)
            continue
        as_float = value.astype(np.float64)
        out[name] = plain(as_float.mean())
        out[f"{name}_se"] = plain(as_float.std(ddof=1) / np.sqrt(value.size))
        out[f"{name}_seeds"] = [plain(v) for v in value]
    return out


# ============================================================================
# Logging: progress, metrics.jsonl, TensorBoard, alarms
# ============================================================================

ALARMS = {
    "alarm_d_saturation": "D saturation: D is right on >= 99% of real and fake samples and "
    "G's gradient has vanished; G has stopped learning (try the non_saturating loss, a "
    "lower d_lr, or fewer d_steps).",
    "alarm_mode_collapse": "mode collapse: the samples' diversity fell below a quarter of the "
    "data's (try packing, --config.pack=2, or a lower g_lr).",
}


class _Monitor:
    """The run's record: the progress bar (or a log line per logged step on a non-terminal),
    ``metrics.jsonl`` and TensorBoard (process 0 only), the non-finite and D-saturation
    checks, and the alarm warnings."""

    def __init__(self, config, workdir: str, start_step: int, is_chief: bool, log):
        self.config, self.log, self.is_chief = config, log, is_chief
        # Alarms compare with earlier records: read them, so a resumed run logs the same.
        self.history = run_folder.read_records(workdir) if is_chief else []
        self.reference_g_grad = next(
            (r["g_grad_norm"] for r in self.history if "g_grad_norm" in r), None
        )
        self.writer = self.metrics_log = None
        if is_chief:
            self.writer = SummaryWriter(workdir, purge_step=start_step + 1 if start_step else None)
            self.metrics_log = run_folder.MetricsLog(workdir)
        self.bar = tqdm(
            total=config.num_steps,
            initial=min(start_step, config.num_steps),
            desc=os.path.basename(workdir),
            dynamic_ncols=True,
            mininterval=1.0,
            disable=True if not is_chief else None,  # None: no bar unless stderr is a terminal
        )
        self.last_time, self.last_step = time.perf_counter(), start_step

    def advance(self, n: int) -> None:
        self.bar.update(n)

    def best(self, name: str) -> float:
        """The best value of ``name`` logged so far (0 if none)."""
        return max((r[name] for r in self.history if name in r), default=0.0)

    def check_skips(self, longest, saver: checkpointing.Saver) -> None:
        """Stops a run that had ``max_consecutive_skips`` skipped updates in a row at any
        step so far (``longest``: the device's record, updated at every iteration)."""
        length = np.asarray(jax.device_get(longest["length"])).reshape(-1)
        end = np.asarray(jax.device_get(longest["end"])).reshape(-1)
        worst = int(np.argmax(length))
        streak, last = int(length[worst]), int(end[worst])
        if streak >= self.config.max_consecutive_skips:
            seed = f" (seed {self.config.seed + worst})" if self.config.num_seeds > 1 else ""
            raise TrainingError(
                f"Training diverged: {streak} consecutive non-finite updates, steps "
                f"{last - streak + 1} to {last}{seed} (all skipped; the limit is "
                f"config.max_consecutive_skips={self.config.max_consecutive_skips}). The last "
                f"good checkpoint ({saver.describe()}) is intact. Try lower learning rates."
            )

    def measure(self, step: int, step_metrics) -> dict[str, Any]:
        """The logged record of the step's metrics."""
        raw = {n: np.asarray(v) for n, v in jax.device_get(step_metrics).items()}
        record = _summarize(raw)
        if self.reference_g_grad is None:  # the first finite G gradient norm logged
            self.reference_g_grad = record["g_grad_norm"]
        record["alarm_d_saturation"] = int(
            self.reference_g_grad is not None
            and any(
                health.d_saturated({n: raw[n].flat[i] for n in raw}, self.reference_g_grad)
                for i in range(self.config.num_seeds)
            )
        )
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        if self.writer is not None:
            self.writer.add_scalar("steps_per_s", rate, step)
        postfix = {
            n: "nan" if record[n] is None else f"{record[n]:.3f}"
            for n in ("d_loss", "g_loss", "d_real", "d_fake")
        }
        if self.bar.disable:
            self.log(
                f"step {step}/{self.config.num_steps} ({rate:.1f} steps/s) "
                + " ".join(f"{n}={v}" for n, v in postfix.items())
            )
        else:
            self.bar.set_postfix(postfix, refresh=False)
        return record

    def write(self, step: int, record: dict[str, Any]) -> None:
        """Warns of raised alarms and appends the record (if any) to the run's logs."""
        for alarm, text in ALARMS.items():
            if record.get(alarm):
                self.log(f"warning: step {step}: {text}")
        if not record or not self.is_chief:
            return
        record = {"step": step, **record}
        self.history.append(record)
        self.metrics_log.write(record)
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
            self.metrics_log.close()


# The value at the optimum of the theory (p_g = p_data, D = 1/2) of the losses that have one.
THEORY_LOSSES = {
    "minimax": {"d_loss": ("log 4: D's loss at the optimum", math.log(4.0)),
                "g_loss": ("-log 2: G's loss at the optimum", -math.log(2.0))},
    "non_saturating": {"d_loss": ("log 4: D's loss at the optimum", math.log(4.0)),
                       "g_loss": ("log 2: G's loss at the optimum", math.log(2.0))},
}  # fmt: skip
HIGH_QUALITY_OF_REAL_DATA = metrics.HIGH_QUALITY_OF_REAL_DATA  # P(chi2_2 <= 9)


def _final_report(config, workdir: str, dataset: data_lib.Dataset, evaluation, log) -> None:
    """Curves of the run (losses and D's outputs beside the theory's optimum, the
    evaluation metrics beside the real data's), and its final metrics beside the
    published ones (2-D data) or the real-data floor (images)."""
    records = run_folder.read_records(workdir)
    theory = THEORY_LOSSES.get(config.loss, {})
    plots.save_curves(
        os.path.join(workdir, "losses.png"), records, ["d_loss", "g_loss"], "loss",
        title=f"{dataset.name}: losses ({config.loss})",
        references={label: value for label, value in theory.values()},
    )  # fmt: skip
    plots.save_curves(
        os.path.join(workdir, "d_outputs.png"), records, ["d_real", "d_fake"], "mean D",
        title=f"{dataset.name}: mean D(x) and D(G(z))",
        references={"1/2: D at the optimum (p_g = p_data)": 0.5},
    )  # fmt: skip
    log(f"Done: {config.num_steps} steps in {workdir}.")
    if dataset.kind == "mixture":
        _report_mode_coverage(config, workdir, dataset, records, log)
    elif evaluation.evaluator is not None:
        _report_image_metrics(config, workdir, dataset, records, evaluation.evaluator.floor, log)


def _report_mode_coverage(config, workdir, dataset, records, log) -> None:
    final = next((r for r in reversed(records) if "eval_modes" in r), None)
    if final is None:
        return
    total, seeds = len(dataset.arrays["means"]), config.num_seeds
    plots.save_curves(
        os.path.join(workdir, "coverage.png"), records,
        ["eval_high_quality", "eval_reverse_kl", "eval_modes"], "fraction, KL",
        title=f"{dataset.name}: mode coverage over training ({config.num_eval_samples} samples)",
        references={f"{HIGH_QUALITY_OF_REAL_DATA:.1%}: high quality of real data":
                    HIGH_QUALITY_OF_REAL_DATA},
        right=["eval_modes"], right_label=f"modes captured (of {total})",
        right_range=(0, total + 0.5),
    )  # fmt: skip

    def pm(name, scale=1.0, digits=1):
        value = f"{scale * _or_inf(final[name]):.{digits}f}"
        if final.get(f"{name}_se") is not None:
            value += f"±{scale * final[f'{name}_se']:.{digits}f}"
        return value

    label = f"jaxgan (this run, {seeds} seed{'s' if seeds > 1 else ''})"
    log(
        f"Mode coverage of {dataset.name} at step {final['step']} "
        f"({config.num_eval_samples} samples, {sampling.generator_label(config.ema_decay)}"
        f"{', mean ± s.e. over seeds' if seeds > 1 else ''}):\n"
        f"  {label:<38} {pm('eval_modes'):>9}/{total} modes  "
        f"{pm('eval_high_quality', 100)}% high quality  KL {pm('eval_reverse_kl', digits=3)}"
    )
    real = "real data (the ceiling)"
    log(f"  {real:<38} {total:>9.1f}/{total} modes  {100 * HIGH_QUALITY_OF_REAL_DATA:.1f}% "
        "high quality  KL 0.00")  # fmt: skip
    for source, (modes, hq, kl) in metrics.PUBLISHED_MODE_COVERAGE[dataset.name].items():
        log(f"  {source:<38} {modes:>9.1f}/{total} modes  {hq:.1f}% high quality  KL {kl:.2f}")


def _report_image_metrics(config, workdir, dataset, records, floor, log) -> None:
    final = next((r for r in reversed(records) if any(k.startswith("eval_") and k not in
                  ("eval_diversity",) for k in r)), None)  # fmt: skip
    if final is None:
        return
    names = [n for n in ("fid", "kid", "classifier_score", "parzen_ll", "modes", "kl")
             if f"eval_{n}" in final]  # fmt: skip
    curve = "fid" if "fid" in names else names[0]
    label = sampling.generator_label(config.ema_decay)
    plots.save_curves(
        os.path.join(workdir, "eval.png"), records, [f"eval_{curve}"], curve,
        title=f"{dataset.name}: {curve} over training ({label})",
        references={f"real data: {floor[curve]:.4g}": floor[curve]} if curve in floor else None,
    )  # fmt: skip
    parts = [
        f"{name} {_or_inf(final[f'eval_{name}']):.4g} (real data {floor[name]:.4g})"
        if name in floor else f"{name} {_or_inf(final[f'eval_{name}']):.4g}"
        for name in names
    ]  # fmt: skip
    log(f"Metrics of {dataset.name} at step {final['step']} ({label}): " + ", ".join(parts) + ".")


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value


# ============================================================================
# Signals
# ============================================================================


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
        if threading.current_thread() is threading.main_thread():
            signals = (signal.SIGINT,) if self.multi_process else (signal.SIGINT, signal.SIGTERM)
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is None and jax.process_index() == 0:
            name = signal.Signals(signum).name
            sys.stderr.write(f"\n{name}: stopping after this step, saving a checkpoint ...\n")
            sys.stderr.flush()
        self.signum = signum
        if self.multi_process:
            os.kill(os.getpid(), signal.SIGTERM)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _should_stop(stop: _SignalFlag, step: int, multi_process: bool) -> bool:
    """Whether to stop before the next step. Several processes agree on the step through
    JAX's preemption sync (polled every step, as it requires)."""
    if multi_process:
        return multihost_utils.reached_preemption_sync_point(step)
    return stop.signum is not None
