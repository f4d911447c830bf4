"""The run folder on disk: config, checkpoints, and the checks that guard resuming.

Layout of a run folder (``--workdir``)::

    config.json          the resolved config of the run (written once, checked on resume)
    run_info.json        reproducibility record: versions, devices, flags, seed, data hash
    checkpoints/<step>/  orbax checkpoints of the GANState (atomic: temp folder + rename)
    metrics.jsonl        one JSON object per logged step
    events.out.tfevents* TensorBoard
    samples_<step>.png   sample grids (images) or scatter plots (2-D data)
    losses.png, d_outputs.png   curves over training, written at the end
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = [
    "ALLOWED_TO_CHANGE",
    "RunError",
    "check_resumable",
    "flatten_config",
    "newest_arrays",
    "open_manager",
    "read_json",
    "restore",
]

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "corrupt_checkpoints"

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
    }
)


class RunError(Exception):
    """A user-facing problem with a run folder; the message says what to do."""


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes JSON through a temporary file and a rename: never a half-written file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def check_resumable(saved: dict[str, Any], current: dict[str, Any], workdir: str) -> None:
    """Refuses to resume when anything but the allowed fields changed.

    Args:
      saved: flattened config (plus ``data.fingerprint``) stored in the run folder.
      current: the same for this invocation.
      workdir: for the message.

    Raises:
      RunError: naming every changed field, with both values.
    """
    keys = (set(saved) | set(current)) - ALLOWED_TO_CHANGE
    changed = sorted(k for k in keys if saved.get(k, "<absent>") != current.get(k, "<absent>"))
    if changed:
        diffs = "; ".join(
            f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}" for k in changed
        )
        raise RunError(
            f"{workdir} holds a run with a different config ({diffs}). Only "
            f"{', '.join(sorted(ALLOWED_TO_CHANGE))} may change on resume. Use a new --workdir, "
            "or rerun with the original settings. Nothing was changed."
        )


def newest_arrays(workdir: str) -> tuple[int, dict[str, np.ndarray]]:
    """``(step, {leaf path: array})``: every leaf of the run's newest checkpoint, as numpy.

    Restored onto this process's first device, whatever topology wrote it, so that runs
    on different devices (1 vs N, CPU vs GPU) can be compared leaf by leaf.
    """
    ckpt = os.path.join(workdir, CHECKPOINT_DIR)
    step = max(int(s) for s in os.listdir(ckpt) if s.isdigit())
    path = os.path.join(ckpt, str(step), "default")
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        checkpointer.metadata(path).item_metadata.tree,
    )
    leaves = jax.tree_util.tree_leaves_with_path(checkpointer.restore(path, target))
    return step, {jax.tree_util.keystr(p): np.asarray(leaf) for p, leaf in leaves}


def open_manager(workdir: str, *, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    """An orbax CheckpointManager over ``workdir/checkpoints``.

    For training, it keeps the ``keep`` newest checkpoints (never deleting the newest),
    saves asynchronously, and cleans up temporary folders that a killed save left
    behind. ``read_only`` opens it for restoring alone, changing nothing on disk.
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, int(keep)),
        create=not read_only,
        read_only=read_only,
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=not read_only,
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
        options=options,
        item_handlers=ocp.StandardCheckpointHandler(),
    )


def _quarantine(workdir: str, step: int) -> str:
    """Moves an unreadable checkpoint aside (never deletes it); returns where it went."""
    src = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR, str(step))
    dst_dir = os.path.join(os.path.abspath(workdir), CORRUPT_DIR)
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, str(step))
    n = 1
    while os.path.exists(dst):
        dst = os.path.join(dst_dir, f"{step}.{n}")
        n += 1
    shutil.move(src, dst)
    return dst


def restore(
    manager: ocp.CheckpointManager,
    abstract_state: Any,
    workdir: str,
    *,
    step: int | None = None,
    warn=print,
    quarantine: bool = True,
) -> tuple[Any, int] | None:
    """Restores the newest readable checkpoint (or exactly ``step``).

    A checkpoint whose stored arrays do not match the model's names, shapes and dtypes
    belongs to another model: that is refused, touching nothing (no silent padding or
    truncation). An unreadable newest checkpoint is skipped for the previous one,
    saying so through ``warn``; once an older one has restored, the unreadable ones are
    moved to ``workdir/corrupt_checkpoints`` (when ``quarantine``), never deleted.

    Returns:
      ``(state, step)``, or ``None`` when the folder holds no checkpoint.

    Raises:
      RunError: ``step`` is absent or unreadable, the checkpoints belong to another
        model, or none is readable.
    """
    manager.reload()
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
        if step not in steps:
            raise RunError(
                f"No checkpoint at step {step} in {workdir}; available: {sorted(steps)}."
            )
        steps = [step]
    if not steps:
        return None
    expected = _leaf_specs(abstract_state)
    unreadable = []
    for candidate in steps:
        try:
            stored = _leaf_specs(manager.item_metadata(candidate))
        except Exception as e:  # unreadable metadata: a corrupt checkpoint
            stored, error = None, e
        if stored is not None and stored != expected:
            raise RunError(
                f"The checkpoint at step {candidate} in {workdir} does not fit this model "
                f"({_first_difference(stored, expected)}): it was written by another model or "
                "config. Use a new --workdir. Nothing was changed."
            )
        if stored is not None:
            try:
                state = manager.restore(candidate, args=ocp.args.StandardRestore(abstract_state))
            except Exception as e:  # orbax raises many types for unreadable data
                error = e
            else:
                if quarantine and unreadable:
                    for bad in unreadable:
                        moved = _quarantine(workdir, bad)
                        warn(f"Moved the unreadable checkpoint {bad} to {moved}.")
                    manager.reload()
                return state, candidate
        message = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if step is not None:
            raise RunError(f"The checkpoint at step {step} in {workdir} is unreadable: {message}")
        unreadable.append(candidate)
        warn(f"warning: the checkpoint at step {candidate} is unreadable ({message}); "
             "trying the previous one.")  # fmt: skip
    raise RunError(
        f"No readable checkpoint in {workdir} (steps {sorted(unreadable)} are unreadable); "
        "nothing was changed. Move the folder aside to start afresh."
    )


def _leaf_specs(tree: Any) -> dict[tuple[str, ...], tuple[tuple[int, ...], str]]:
    """``{path: (shape, dtype)}`` for every array leaf, with paths as plain names."""

    def name(k):
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                return str(getattr(k, attr))
        return str(k)

    if tree is None:
        raise ValueError("no metadata")
    return {
        tuple(name(k) for k in path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _first_difference(stored: dict, expected: dict) -> str:
    for path in sorted(set(stored) | set(expected)):
        got, want = stored.get(path), expected.get(path)
        if got != want:
            where = "/".join(path)
            if got is None:
                return f"{where} is missing from the checkpoint"
            if want is None:
                return f"the checkpoint has {where}, which this model lacks"
            return f"{where} is {got[0]} {got[1]} in the checkpoint but {want[0]} {want[1]} here"
    return "same arrays"
