"""The run folder on disk: what it holds, the resume check, and :func:`open_run`.

Layout of a run folder (``--workdir``)::

    config.json          the resolved config and the dataset's shape and fingerprint
                         (written when a run starts, checked when it resumes)
    run_info.json        the reproducibility record of each session: versions, devices,
                         flags, seed, dataset fingerprint, command line
    trainer.lock         held by the trainer that uses the folder (removed when it exits)
    checkpoints/<step>/  orbax checkpoints of the GANState (jaxgan.checkpointing)
    corrupt_checkpoints/ unreadable checkpoints moved aside, never deleted
    metrics.jsonl        one JSON object per logged step
    events.out.tfevents* the same for TensorBoard
    samples_<step>.png   sample grids (images) or scatter plots (2-D data)
    losses.png, d_outputs.png   curves over training, written at the end
    eval.json, eval_raw.json    python -m jaxgan.evaluate

Every file but the checkpoints and TensorBoard's is written through
:func:`jaxgan.files.write_atomic`. :func:`open_run` rebuilds a trained generator from a
folder, for ``jaxgan.sample`` and ``jaxgan.evaluate``.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
import types
from collections.abc import Callable, Collection
from typing import Any

import jax
import ml_collections
import numpy as np

import jaxgan
from jaxgan import checkpointing, files, sampling
from jaxgan import data as data_lib
from jaxgan import state as state_lib
from jaxgan.errors import RunError

__all__ = [
    "ALLOWED_TO_CHANGE",
    "CONFIG_FILE",
    "EVAL_FILE",
    "HELD_OUT_SEED",
    "HELD_OUT_SPLIT",
    "LEGACY_VALUES",
    "METRICS_FILE",
    "RAW_EVAL_FILE",
    "RUN_INFO_FILE",
    "TRAINING_REAL_NUM",
    "MetricsLog",
    "RunConfig",
    "RunLock",
    "TrainedRun",
    "check_can_resume",
    "check_resumable",
    "flatten_config",
    "jax_settings",
    "open_run",
    "predated_fields",
    "read_config",
    "read_records",
    "record_session",
    "run_identity",
    "truncate_metrics",
    "with_fields",
    "write_config",
]

CONFIG_FILE = "config.json"
LOCK_FILE = "trainer.lock"
RUN_INFO_FILE = "run_info.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
HELD_OUT_SPLIT = "test"
"""The split whose images calibrate D for guided sampling (:meth:`TrainedRun.held_out_real`)."""
TRAINING_REAL_NUM = 60_000
"""Real training examples that D is refined on (:meth:`TrainedRun.training_real`)."""
HELD_OUT_SEED = 271828
"""The key of the fresh 2-D mixture draws that calibrate D for guided sampling."""
RAW_EVAL_FILE = "eval_raw.json"

# Fields a resumed run may change: they do not enter the computation. Data paths may
# change too, since the data itself is checked by fingerprint.
ALLOWED_TO_CHANGE = frozenset(
    {
        "num_steps",
        "log_every",
        "eval_every",
        "ckpt_every",
        "keep_checkpoints",
        "num_eval_samples",
        "eval_metrics",
        "eval_parzen",
        "data.idx_dir",
        "data.data_dir",
        "data.loader",  # both loaders give the same batches
        "data.memory_budget_bytes",
    }
)


# ----------------------------------------------------------------------------- the lock
class RunLock:
    """One trainer per run folder: an exclusive ``flock`` on ``workdir/trainer.lock``.

    The file names its holder (host, pid, start time). The kernel (or the NFS lock
    server) releases the lock when the holder dies, however it dies (kill -9, a lost
    host), so a lock file without a live holder is stale: :meth:`acquire` takes it over and
    says so. A trainer that exits removes the file.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> str | None:
        """Takes the lock; returns a note to show the user (a stale lock taken over, or a
        filesystem without locks), or None.

        Raises:
          RunError: another live trainer holds the folder; nothing in it was changed.
        """
        self._created = not os.path.exists(self.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(_read_holder(fd))
                os.close(fd)
                raise RunError(
                    f"{self.workdir} is in use by the trainer {holder}: stop it first, or train "
                    "into another --workdir. Nothing was changed."
                ) from None
            except OSError as e:  # a filesystem without locks (ENOLCK, EOPNOTSUPP)
                os.close(fd)
                return (
                    f"warning: cannot lock {self.path} ({os.strerror(e.errno or errno.ENOLCK)}): "
                    f"make sure no other trainer uses {self.workdir}."
                )
            try:  # the file may have been removed (and made anew) between open and flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        if previous:
            return (
                f"note: {self.path} named the trainer {_describe_holder(previous)}, which no "
                "longer holds it (it died or its host was lost): a stale lock, taken over."
            )
        return None

    def release(self) -> None:
        """Removes the lock file and releases the lock (if held)."""
        if self._fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        if self._created and not os.listdir(self.workdir):  # a run refused before it began
            os.rmdir(self.workdir)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return None


def _describe_holder(holder: dict[str, Any] | None) -> str:
    if not isinstance(holder, dict):
        return "(unknown: an unreadable lock file)"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since')})"


# ----------------------------------------------------------------------------- config.json
def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.name": "toy2d", ...}`` from a ConfigDict or nested dict."""
    items = config.items() if hasattr(config, "items") else vars(config).items()
    flat = {}
    for key, value in items:
        if hasattr(value, "items"):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Fields added since jaxgan 0.1, each with the value that reproduces what a run written
# without it computed: an older config.json is read with these values, so its run resumes
# bit for bit under the settings it was written with.
LEGACY_VALUES = {
    "penalty_per": "sample",  # R1/R2/WGAN-GP per sample, not per pack (jaxgan <= 0.2)
    "optimizer.schedule_per": "update",  # D's lr_decay/momentum ramp per update (<= 0.2)
    "ema_warmup": False,  # the EMA's decay from the first step (jaxgan <= 0.2)
    "model.conv": "fast",
    "model.d_norm": "batch",
    "model.conditioning": "none",  # the toolkit of 0.3: off in every earlier run
    "model.spectral_norm": "default",
    "model.attention": 0,
    "augment": "",
    "acgan_weight": 1.0,
    "optimizer.linear_decay_steps": 0,
    "data.image_size": 0,
    "jax.threefry_partitionable": True,  # JAX's default when these fields were added
}


def jax_settings() -> dict[str, Any]:
    """The process's JAX settings that change a run's bits (recorded in config.json)."""
    return {"threefry_partitionable": bool(jax.config.jax_threefry_partitionable)}


def run_identity(config: Any, fingerprint: str, jax_record: dict | None = None) -> dict[str, Any]:
    """What a resumed run must share with the run it resumes: every config field (flat),
    the dataset's fingerprint, and the JAX settings that change its bits
    (``jax.threefry_partitionable``). Fields a config predates take their
    :data:`LEGACY_VALUES`."""
    identity = {**flatten_config(config), "data.fingerprint": fingerprint}
    identity.update({f"jax.{k}": v for k, v in (jax_record or {}).items()})
    if "model.pack" in identity:  # jaxgan 0.1's place for the packing degree
        identity.setdefault("pack", identity.pop("model.pack"))
    for name, value in LEGACY_VALUES.items():
        identity.setdefault(name, value)
    return identity


def _canonical(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity with settings that compute the same thing written the same way."""
    c = dict(identity)
    pack = int(c.get("pack") or 1)
    penalties = ("r1_gamma", "r2_gamma", "gp_weight")
    if c.get("penalty_per") == "sample":
        if pack == 1 or not any(c.get(name) for name in penalties):
            c["penalty_per"] = "pack"
        elif not c.get("gp_weight"):  # per sample, γ is γ/m per pack: the same penalty
            c.update({n: c[n] / pack for n in ("r1_gamma", "r2_gamma") if n in c})
            c["penalty_per"] = "pack"
    schedules = c.get("optimizer.lr_decay", 1.0) != 1.0 or c.get("optimizer.momentum_ramp_steps", 0)
    if c.get("ema_decay") == 0:  # no EMA: nothing to warm up
        c["ema_warmup"] = True
    if c.get("optimizer.schedule_per") == "update" and (c.get("d_steps") == 1 or not schedules):
        c["optimizer.schedule_per"] = "iteration"
    return c


def check_resumable(saved: dict[str, Any], current: dict[str, Any], workdir: str) -> None:
    """Refuses to resume when anything but the allowed fields changed.

    Args:
      saved: the identity (:func:`run_identity`) stored in the run folder.
      current: the same for this invocation.
      workdir: for the message.

    Raises:
      RunError: naming every changed field, with both values.
    """
    saved_c, current_c = _canonical(saved), _canonical(current)
    keys = (set(saved_c) | set(current_c)) - ALLOWED_TO_CHANGE
    changed = sorted(k for k in keys if saved_c.get(k, "<absent>") != current_c.get(k, "<absent>"))
    if changed:

        def diff(k):
            if saved.get(k, "<absent>") != current.get(k, "<absent>"):
                return f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
            return (  # equal as written, different in what they compute
                f"{k}: {saved_c.get(k)!r} -> {current_c.get(k)!r} in the papers' terms (the "
                f"run has penalty_per={saved.get('penalty_per')!r}, "
                f"optimizer.schedule_per={saved.get('optimizer.schedule_per')!r})"
            )

        diffs = "; ".join(diff(k) for k in changed)
        hint = ""
        if any(k in LEGACY_VALUES for k in changed):
            hint = (
                " Fields a run predates have the values of the jaxgan that wrote it: pass them "
                "(e.g. --config.penalty_per=sample) to continue it as it was."
            )
        if "jax.threefry_partitionable" in changed:
            hint += (
                f" Set JAX_THREEFRY_PARTITIONABLE={int(saved['jax.threefry_partitionable'])} "
                "to resume with the random numbers it was trained with."
            )
        raise RunError(
            f"{workdir} holds a run with a different config ({diffs}). Only "
            f"{', '.join(sorted(ALLOWED_TO_CHANGE))} may change on resume. Use a new --workdir, "
            f"or rerun with the original settings.{hint} Nothing was changed."
        )


def _read_config_file(workdir: str) -> dict[str, Any] | None:
    """config.json's content, None when absent; RunError when unreadable."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        saved = files.read_json(path)
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is unreadable ({e}); use a new --workdir.") from e
    if not (isinstance(saved, dict) and isinstance(saved.get("config"), dict)) or not isinstance(
        saved.get("dataset"), dict
    ):
        raise RunError(f"{path} is incomplete (no config or dataset); use a new --workdir.")
    return saved


def predated_fields(workdir: str, config: Any, given: Collection[str]) -> dict[str, Any]:
    """The fields of ``config`` that the run in ``workdir`` predates and that this
    invocation does not set (not in ``given``), each with its :data:`LEGACY_VALUES` value
    where that differs from ``config``'s: what to train with so that an older run, resumed
    without flags, continues as it was trained. Empty for a new folder."""
    saved = _read_config_file(workdir)
    if saved is None:
        return {}
    written = set(flatten_config(saved["config"]))
    if "model.pack" in written:
        written.add("pack")
    current = flatten_config(config)
    return {
        name: value
        for name, value in LEGACY_VALUES.items()
        if name in current and name not in written and name not in given and current[name] != value
    }


def saved_field(workdir: str, name: str) -> Any:
    """The flat config field ``name`` (``"model.conv"``) of the run in ``workdir``; None
    when the folder holds no run or the run's config predates the field."""
    saved = _read_config_file(workdir)
    return None if saved is None else flatten_config(saved["config"]).get(name)


def check_can_resume(workdir: str, config: Any, dataset: data_lib.Dataset) -> Any:
    """The config to train ``workdir``'s run with; RunError, touching nothing, when the
    folder holds a run of another config or other data.

    For a new folder that is ``config``. For a run to resume it is the run's own config as
    config.json holds it (fields it predates set to their :data:`LEGACY_VALUES`), with the
    fields that may change (:data:`ALLOWED_TO_CHANGE`) taken from ``config``: so a run
    resumes with what it was trained with, bit for bit. A field whose default changed
    since the run was written is refused, naming it, unless ``config`` has its legacy
    value (:func:`predated_fields` gives them).
    """
    saved = _read_config_file(workdir)
    if saved is None:
        return config
    saved_identity = run_identity(
        saved["config"], saved["dataset"].get("fingerprint", "<absent>"), saved.get("jax", {})
    )
    current = run_identity(config.to_dict(), dataset.fingerprint, jax_settings())
    check_resumable(saved_identity, current, workdir)
    kept = {
        name: value
        for name, value in saved_identity.items()
        if name not in ALLOWED_TO_CHANGE and not name.startswith(("jax.", "data.fingerprint"))
    }
    return with_fields(config, kept)


def with_fields(config: Any, values: dict[str, Any]) -> Any:
    """A copy of ``config`` with the flat fields ``values`` (``"optimizer.b1": 0.5``) set."""
    out = ml_collections.ConfigDict(config.to_dict())
    for name, value in values.items():
        node, *path = [out, *name.split(".")]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return out


def write_config(workdir: str, config: Any, dataset: data_lib.Dataset) -> None:
    """Writes config.json: the resolved config and what the data is."""
    files.write_json_atomic(
        os.path.join(workdir, CONFIG_FILE),
        {
            "config": config.to_dict(),
            "dataset": {
                "name": dataset.name,
                "kind": dataset.kind,
                "shape": list(dataset.shape),
                "fingerprint": dataset.fingerprint,
                "num_classes": dataset.num_classes,
            },
            "jax": jax_settings(),
        },
    )


# ----------------------------------------------------------------------------- run_info.json
def _versions() -> dict[str, str]:
    names = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "numpy"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def source_commit() -> str:
    """The git commit of the jaxgan source that runs (``+dirty`` with uncommitted
    changes), or ``"not a git checkout"`` (an installed wheel, a source archive)."""
    here = os.path.dirname(os.path.abspath(jaxgan.__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _session(config: Any, dataset: data_lib.Dataset, start_step: int) -> dict[str, Any]:
    return {
        "start_step": start_step,
        "jaxgan": {"version": jaxgan.__version__, "commit": source_commit()},
        "time": _now(),
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


def record_session(
    workdir: str, config: Any, dataset: data_lib.Dataset, start_step: int
) -> str | None:
    """Appends this session to run_info.json; returns a warning when the run resumes
    under another jax version than it was started with (None otherwise)."""
    path = os.path.join(workdir, RUN_INFO_FILE)
    sessions = files.read_json(path)["sessions"] if os.path.exists(path) else []
    warning = None
    if sessions and sessions[-1]["versions"]["jax"] != jax.__version__:
        warning = (
            f"warning: this run was started under jax {sessions[-1]['versions']['jax']} and "
            f"resumes under jax {jax.__version__}: random streams and numerics may differ, "
            "so the resumed run may not match an uninterrupted one bit for bit."
        )
    sessions.append(_session(config, dataset, start_step))
    files.write_json_atomic(path, {"sessions": sessions})
    return warning


# ----------------------------------------------------------------------------- metrics.jsonl
def read_records(workdir: str) -> list[dict[str, Any]]:
    """Every record of metrics.jsonl ([] when there is none yet)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, last_step: int) -> None:
    """Drops records logged after ``last_step`` (by a run that died before its next save)."""
    path = os.path.join(workdir, METRICS_FILE)
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
        files.write_atomic(path, "".join(kept))


class MetricsLog:
    """Appends records to metrics.jsonl, one JSON line each, flushed at once."""

    def __init__(self, workdir: str):
        self._file = open(os.path.join(workdir, METRICS_FILE), "a")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(files.json_ready(record)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# ----------------------------------------------------------------------------- open_run
@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A trained generator rebuilt from a run folder (:func:`open_run`).

    Attributes:
      workdir: the run folder.
      config: the run's config, as saved in config.json.
      dataset: what the data is (the mixture itself for 2-D data; for image data its
        name, kind and shape, without the images).
      fingerprint: the dataset's fingerprint.
      gan: the networks and optimizers.
      state: the state of the chosen seed at ``step``.
      step: the checkpoint's step.
      seed_index: which seed of a ``num_seeds`` run ``state`` is.
      sampler: the run's :class:`jaxgan.sampling.Sampler`.
    """

    workdir: str
    config: ml_collections.ConfigDict
    dataset: data_lib.Dataset
    fingerprint: str
    gan: state_lib.GAN
    state: state_lib.GANState
    step: int
    seed_index: int
    sampler: sampling.Sampler

    def sample(
        self,
        num: int,
        seed: int = sampling.EVAL_NOISE_SEED,
        *,
        ema: bool = True,
        labels: Any = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """``num`` samples of the EMA generator (or G's own parameters with ``ema=False``);
        ``labels`` and ``truncation`` as :meth:`jaxgan.sampling.Sampler.__call__`."""
        return self.sampler.sample(
            self.state, num, seed, ema=ema, labels=labels, truncation=truncation
        )

    def held_out_real(
        self, num: int, *, idx_dir: str | None = None, split: str = HELD_OUT_SPLIT
    ) -> np.ndarray:
        """``num`` real examples G never trained on, in G's output range, for guided
        sampling's calibration: fresh draws from a 2-D mixture (key
        :data:`HELD_OUT_SEED`), or the first ``num`` images of ``split`` (default the
        test split; IDX files from ``idx_dir`` or the run's ``config.data.idx_dir``).

        Raises:
          jaxgan.data.DataError: the split cannot be loaded; the message says how.
        """
        return self._real(num, idx_dir=idx_dir, split=split, mixture_seed=HELD_OUT_SEED)

    def training_real(self, num: int, *, idx_dir: str | None = None) -> np.ndarray:
        """``num`` examples of the data G trained on, in G's output range, for training D
        further (:meth:`jaxgan.sampling.Guide.refine`): fresh draws from a 2-D mixture
        (key ``HELD_OUT_SEED + 1``), or the first ``num`` images of the run's split."""
        split = self.config.data.get("split") or "train"
        return self._real(num, idx_dir=idx_dir, split=split, mixture_seed=HELD_OUT_SEED + 1)

    def _real(self, num: int, *, idx_dir: str | None, split: str, mixture_seed: int):
        """Fresh draws of a mixture (key ``mixture_seed``), or ``split``'s first images."""
        if self.dataset.kind == "mixture":
            key = state_lib.prng_key(mixture_seed)
            draws = data_lib.sample_batch(
                self.dataset.arrays, key, num, dataset=self.dataset, value_range=(0.0, 1.0)
            )
            return np.asarray(draws)
        # Held on the host: the run's budget (config.data.memory_budget_bytes) is the
        # device loader's, and a streamed run's data is over it by design.
        data_config = dict(self.config.data.to_dict(), split=split, memory_budget_bytes=0)
        if idx_dir:
            data_config["idx_dir"] = idx_dir
        images = data_lib.load(types.SimpleNamespace(**data_config)).arrays["images"][:num]
        return data_lib.images_in_range(images, self.gan.models.output_range)

    def sample_guided(
        self,
        num: int,
        seed: int = sampling.EVAL_NOISE_SEED,
        *,
        method: str,
        real: Any = None,
        idx_dir: str | None = None,
        ema: bool = True,
        truncation: float | None = None,
        log: Callable[[str], None] | None = None,
        **settings: Any,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``num`` samples drawn with ``method`` (``"drs"`` or ``"mh"``) and their record:
        :meth:`jaxgan.sampling.Guide.sample` with this run's G and D, calibrated on the
        held-out ``real`` examples (default: ``2 × calibration_num`` of
        :meth:`held_out_real`, read from ``idx_dir`` for IDX images); with
        ``refine_steps``, D is first trained further on :data:`TRAINING_REAL_NUM` examples
        of :meth:`training_real`.

        Raises:
          jaxgan.sampling.GuidedSamplingError: the run or the settings cannot be guided.
          jaxgan.data.DataError: the held-out data cannot be loaded.
        """
        guide = sampling.Guide(  # refuses a class-conditional run before any data is read
            self.sampler, self.gan, compute_dtype=state_lib.compute_dtype(self.config)
        )
        settings = {**sampling.GUIDED_DEFAULTS, **settings}
        if real is None:
            if log is not None:
                log(f"Calibrating D on held-out real data for method {method} ...")
            real = self.held_out_real(2 * settings["calibration_num"], idx_dir=idx_dir)
        if settings["refine_steps"] and settings.get("train_real") is None:
            settings["train_real"] = self.training_real(TRAINING_REAL_NUM, idx_dir=idx_dir)
        return guide.sample(
            self.state, num, seed, method=method, real=real, ema=ema, truncation=truncation,
            **settings,
        )  # fmt: skip


def _dataset_of(info: dict[str, Any]) -> data_lib.Dataset:
    if info["kind"] == "mixture":
        return data_lib.mixture(info["name"])
    return data_lib.Dataset(
        name=info["name"],
        kind=info["kind"],
        shape=tuple(info["shape"]),
        arrays={},
        fingerprint=info.get("fingerprint", ""),
        num_classes=int(info.get("num_classes", 0)),
    )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What config.json says of a run (:func:`read_config`).

    Attributes:
      config: the run's config.
      dataset: what the data is (the mixture itself for 2-D data; for image data its
        name, kind and shape, without the images).
      fingerprint: the dataset's fingerprint.
      gan: the networks and optimizers the config names.
    """

    config: ml_collections.ConfigDict
    dataset: data_lib.Dataset
    fingerprint: str
    gan: state_lib.GAN


def read_config(workdir: str) -> RunConfig:
    """The run of ``workdir`` as its config.json describes it.

    Raises:
      RunError: ``workdir`` is no run folder, or its config.json is unreadable or names
        networks that cannot be built.
    """
    saved = _read_config_file(workdir)
    if saved is None:
        raise RunError(f"{workdir} is not a jaxgan run folder (no {CONFIG_FILE}).")
    try:
        config = ml_collections.ConfigDict(saved["config"])
        dataset = _dataset_of(saved["dataset"])
        gan = state_lib.build_gan(config, dataset.shape, dataset.num_classes)
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise RunError(f"{os.path.join(workdir, CONFIG_FILE)} is unusable ({e}).") from e
    return RunConfig(config, dataset, saved["dataset"].get("fingerprint", ""), gan)


def open_run(
    workdir: str,
    *,
    step: int | None = None,
    seed_index: int = 0,
    log: Callable[[str], None] | None = None,
) -> TrainedRun:
    """Rebuilds the trained run of ``workdir`` from its newest checkpoint (or ``step``).

    Reads config.json (:func:`read_config`), builds the networks, and restores the
    checkpoint read-only (nothing in the folder changes; an unreadable newest checkpoint
    is skipped for the one before, saying so through ``log``).

    Raises:
      RunError: ``workdir`` is no run folder, its config.json is unreadable, it holds no
        checkpoint (or not ``step``), or ``seed_index`` is not one of its seeds.
    """
    saved = read_config(workdir)
    config, gan = saved.config, saved.gan
    num_seeds = int(config.get("num_seeds", 1))
    if not 0 <= seed_index < num_seeds:
        raise RunError(f"--seed_index must be in [0, {num_seeds}): the run trained {num_seeds}.")
    abstract = jax.eval_shape(state_lib.make_init_fn(gan, config.seed, num_seeds))
    manager = checkpointing.open_manager(workdir, keep=config.keep_checkpoints, read_only=True)
    try:
        restored = checkpointing.restore(
            manager, abstract, workdir, step=step, warn=log or (lambda _: None)
        )
    finally:
        manager.close()
    if restored is None:
        raise RunError(f"{workdir} holds no checkpoint yet.")
    state, restored_step, _ = restored
    sampler = sampling.Sampler.for_config(gan, config)
    return TrainedRun(
        workdir=workdir,
        config=config,
        dataset=saved.dataset,
        fingerprint=saved.fingerprint,
        gan=gan,
        state=state_lib.seed_state(state, seed_index, num_seeds),
        step=restored_step,
        seed_index=seed_index,
        sampler=sampler,
    )
