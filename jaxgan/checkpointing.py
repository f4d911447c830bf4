"""Checkpoints of the GANState with orbax: save (asynchronous, confirmed), restore, fallback.

Checkpoints live in ``<workdir>/checkpoints/<step>/`` (orbax writes each through a
temporary folder and a rename): the state in ``default/``, and for a run streamed through
the Grain loader also the loader's position in ``data/`` (a JSON item,
:func:`loader_position`). :func:`restore` refuses a checkpoint of another model,
falls back from an unreadable newest checkpoint to the one before and moves the
unreadable one aside (to ``corrupt_checkpoints/``, never deleting it). :class:`Saver`
saves asynchronously and reports a step as saved only once it is on disk, and never
saves a non-finite state. The rest of the run folder is :mod:`jaxgan.run_folder`'s.
"""

from __future__ import annotations

import logging
import os
import shutil
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxgan import steps
from jaxgan.errors import RunError, TrainingError

__all__ = [
    "CHECKPOINT_DIR",
    "CORRUPT_DIR",
    "Restored",
    "RunError",
    "Saver",
    "loader_position",
    "move_aside",
    "newest_arrays",
    "open_manager",
    "restore",
]

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "corrupt_checkpoints"
STATE_ITEM = "default"  # the GANState: orbax's name for a manager's single item
LOADER_ITEM = "data"  # the streaming loader's position (JSON), beside the state

# Managers opened with ``loader_position=True``: the state and the loader's position as
# two orbax items (a checkpoint with the state alone, older or the device loader's, reads
# the same).
_WITH_LOADER: weakref.WeakSet = weakref.WeakSet()


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


def open_manager(
    workdir: str, *, keep: int, read_only: bool = False, loader_position: bool = False
) -> ocp.CheckpointManager:
    """An orbax CheckpointManager over ``workdir/checkpoints``.

    For training, it keeps the ``keep`` newest checkpoints (never deleting the newest),
    saves asynchronously, and cleans up temporary folders that a killed save left
    behind. ``read_only`` opens it for restoring alone, changing nothing on disk.
    ``loader_position``: checkpoints hold the streaming loader's position too (item
    ``data``, :class:`Saver` ``save(..., position=)``, :func:`loader_position`); they
    restore without it as well.
    """
    if read_only:  # orbax's notices of what read-only means, about a folder we chose so
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None, save_interval_steps=0, create=False, read_only=True,
            cleanup_tmp_directories=False, enable_async_checkpointing=False,
        )  # fmt: skip
    else:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max(1, int(keep)), create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=True,
        )  # fmt: skip
    quiet = _ReadOnlyNotice()
    logging.getLogger("absl").addFilter(quiet)
    try:
        handlers: Any = ocp.StandardCheckpointHandler()
        if loader_position:
            handlers = {STATE_ITEM: handlers, LOADER_ITEM: ocp.JsonCheckpointHandler()}
        manager = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
            options=options,
            item_handlers=handlers,
        )
        if loader_position:
            _WITH_LOADER.add(manager)
        return manager
    finally:
        logging.getLogger("absl").removeFilter(quiet)


class _ReadOnlyNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "read only" not in record.getMessage() and "read_only" not in record.getMessage()


class Restored(NamedTuple):
    """A restored checkpoint: the state, its step, and the newer steps that were unreadable
    (skipped for it; :func:`move_aside` them once the run goes on)."""

    state: Any
    step: int
    unreadable: tuple[int, ...] = ()


def move_aside(workdir: str, steps: Iterable[int], warn=print) -> None:
    """Moves unreadable checkpoints to ``workdir/corrupt_checkpoints`` (never deleting
    them), saying where each went. With several processes, one process does it."""
    for step in steps:
        warn(f"Moved the unreadable checkpoint {step} to {_move_aside(workdir, step)}.")


def _move_aside(workdir: str, step: int) -> str:
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
) -> Restored | None:
    """Restores the newest readable checkpoint (or exactly ``step``), changing nothing.

    A checkpoint whose stored arrays do not match the model's names, shapes and dtypes
    belongs to another model: that is refused, touching nothing (no silent padding or
    truncation). An unreadable newest checkpoint is skipped for the previous one,
    saying so through ``warn``; the result names the skipped steps, for
    :func:`move_aside` (a save at their step would otherwise fail, orbax refusing to
    overwrite).

    Returns:
      A :class:`Restored`, or ``None`` when the folder holds no checkpoint.

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
            stored = manager.item_metadata(candidate)
            if manager in _WITH_LOADER:
                stored = stored[STATE_ITEM]
            stored = _leaf_specs(stored)
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
                args = ocp.args.StandardRestore(abstract_state)
                if manager in _WITH_LOADER:
                    args = ocp.args.Composite(**{STATE_ITEM: args})
                state = manager.restore(candidate, args=args)
                if manager in _WITH_LOADER:
                    state = state[STATE_ITEM]
            except Exception as e:  # orbax raises many types for unreadable data
                error = e
            else:
                return Restored(state, candidate, tuple(unreadable))
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


def loader_position(manager: ocp.CheckpointManager, step: int) -> dict[str, Any] | None:
    """The streaming loader's position saved in the checkpoint at ``step``, or None when it
    has none (a checkpoint of the device loader, or older than the Grain loader).

    Raises:
      RunError: the position is there but unreadable (not a JSON object).
    """
    if manager not in _WITH_LOADER:
        return None
    item = os.path.join(str(manager.directory), str(step), LOADER_ITEM)
    if not os.path.isdir(item):
        return None
    args = ocp.args.Composite(**{LOADER_ITEM: ocp.args.JsonRestore()})
    try:
        position = manager.restore(step, args=args)[LOADER_ITEM]
        if not isinstance(position, dict):
            raise ValueError(f"a JSON {type(position).__name__}, not an object")
    except Exception as e:  # orbax raises many types for unreadable data
        raise RunError(
            f"The data loader's position in {item} is unreadable ({type(e).__name__}: {e}). "
            "Resume from another step (move this one aside)."
        ) from e
    return dict(position)


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


_all_finite = jax.jit(steps.all_finite)


class Saver:
    """Saves checkpoints asynchronously and reports each only once it is on disk.

    Args:
      manager: the run's checkpoint manager (:func:`open_manager`).
      step: the step of the checkpoint the run resumed from (None for a new run): the
        newest step known to be completely written.
    """

    def __init__(self, manager: ocp.CheckpointManager, step: int | None):
        self.manager = manager
        self.confirmed = step  # newest step known to be completely written
        self.pending: int | None = None

    def describe(self) -> str:
        """The newest complete checkpoint, in words."""
        return "none written yet" if self.confirmed is None else f"step {self.confirmed}"

    def wait(self) -> None:
        """Waits for the pending save; raises TrainingError if it failed."""
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

    def poll(self) -> None:
        """Confirms a pending save that has finished, or raises TrainingError if it failed:
        called every step, it reports a failed write a step or two after it happened."""
        if self.pending is not None and not self.manager.is_saving_in_progress():
            self.wait()

    def save(self, state: Any, step: int, position: dict[str, Any] | None = None) -> None:
        """Starts saving ``state`` as ``step`` (once the previous save has succeeded), with
        the streaming loader's ``position`` beside it (a manager opened with
        ``loader_position=True``)."""
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
            args = ocp.args.StandardSave(state)
            if self.manager in _WITH_LOADER:
                items = {STATE_ITEM: args}
                if position is not None:
                    items[LOADER_ITEM] = ocp.args.JsonSave(position)
                args = ocp.args.Composite(**items)
            self.manager.save(step, args=args, force=True)
        except Exception as e:
            raise TrainingError(
                f"Saving the checkpoint at step {step} failed: {e}. The newest complete "
                f"checkpoint is {self.describe()}."
            ) from e
        self.pending = step
