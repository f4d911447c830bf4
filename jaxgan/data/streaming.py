"""The Grain loader: the real batches of a dataset that does not fit on the device.

The device loader holds a dataset on every device and draws each batch inside the
jitted step (:func:`jaxgan.data.sample_batch`). This one holds nothing on the device.
For iteration ``step`` of seed ``s`` it computes on the host the indices the device
loader would draw, with the same ``jax.random`` calls on the same keys
(:func:`jaxgan.data.batch_indices` of ``fold_in(make_keys(s)["data"], step)``, for
``d_steps * batch_size`` examples), so the batches are equal to the device loader's bit
for bit and stay a pure function of ``(seed, step)``. It reads those examples through a
``grain.MapDataset`` over the dataset's :class:`jaxgan.data.ImageSource` (a tfds
``data_source`` or host arrays), one element per dispatch of ``steps_per_dispatch``
iterations, Grain's threads reading a few dispatches ahead, and places each as uint8,
sharded over the mesh's ``"data"`` axis on the batch dimension; the compiled program
converts it to floats with the table ``sample_batch`` uses (:func:`jaxgan.data.
pixels_to_floats`). With several processes each reads only the rows of the batch its
own devices hold.

Its position is the Grain iterator's state, ``{"next_index": step // steps_per_dispatch}``:
the trainer saves it in each checkpoint beside the state (:meth:`Feed.position`) and a
resumed run starts from it after checking it agrees with the state's step
(:meth:`Feed.start`).
"""

from __future__ import annotations

import math
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgan import data as data_lib
from jaxgan import state as state_lib
from jaxgan.errors import DataError, RunError

__all__ = ["NUM_THREADS", "PREFETCH", "Feed"]

NUM_THREADS = 2
"""Grain threads reading dispatches ahead (each reads a whole dispatch's examples)."""

PREFETCH = 4
"""Dispatches Grain holds read ahead of the trainer."""


class Feed:
    """The real batches of a run, read through Grain, ``steps_per_dispatch`` iterations at a
    time: ``next(feed)`` is ``images`` uint8 ``(n_fused, [num_seeds,] d_steps, batch_size,
    *shape)`` on the mesh, or ``(images, labels)`` (int32, without the image dimensions)
    for a class-conditional GAN. Call :meth:`start` first.

    Args:
      dataset: a streamed dataset (``jaxgan.data.load(..., stream=True)``).
      seed, num_seeds: the run's seeds ``seed, seed + 1, ...``, each with its own batches.
      d_steps, batch_size: the batches of one iteration.
      steps_per_dispatch: iterations per element.
      num_steps: the run's length (elements cover ``ceil(num_steps / steps_per_dispatch)``).
      labels: also read the class labels.
      mesh: the trainer's 1-D ``"data"`` mesh.
    """

    def __init__(
        self,
        dataset: data_lib.Dataset,
        *,
        seed: int,
        num_seeds: int,
        d_steps: int,
        batch_size: int,
        steps_per_dispatch: int,
        num_steps: int,
        labels: bool,
        mesh: Mesh,
        num_threads: int = NUM_THREADS,
        prefetch: int = PREFETCH,
    ):
        if dataset.source is None or dataset.kind != "images":
            raise DataError(f"dataset {dataset.name!r} is not a streamed image dataset.")
        if labels and not dataset.num_classes:
            raise DataError(
                f"dataset {dataset.name!r} has no class labels, which a class-conditional GAN "
                "trains with (or train it unconditionally: --config.model.conditioning=none)"
            )
        self.dataset, self.source, self.labels = dataset, dataset.source, labels
        self.seed, self.num_seeds, self.n_fused = seed, num_seeds, steps_per_dispatch
        self.batch_size = batch_size
        seeds = () if num_seeds == 1 else (num_seeds,)
        self.lead = (steps_per_dispatch, *seeds, d_steps, batch_size)
        self.batch_axis = len(self.lead) - 1
        self.sharding = NamedSharding(mesh, P(*[None] * self.batch_axis, "data"))
        self.rows = self._local_rows()
        self._cpu = jax.devices("cpu")[0]
        num, size = d_steps * batch_size, len(self.source)

        def indices(steps):  # (n_fused,) int32 -> (n_fused, [num_seeds,] d_steps, batch_size)
            def for_seed(run_seed):
                data_key = state_lib.make_keys(run_seed)["data"]
                draw = lambda step: data_lib.batch_indices(
                    jax.random.fold_in(data_key, step), num, size
                )
                return jax.vmap(draw)(steps)

            if num_seeds == 1:
                return for_seed(seed).reshape(self.lead)
            per_seed = jax.vmap(for_seed)(seed + jnp.arange(num_seeds))
            return jnp.moveaxis(per_seed, 0, 1).reshape(self.lead)

        self._indices = jax.jit(indices)
        dispatches = max(1, math.ceil(num_steps / steps_per_dispatch))
        self._elements = grain.MapDataset.range(dispatches).map(self._read)
        self._options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
        self._iterator = None

    def _local_rows(self) -> slice:
        """The rows of the batch this process's devices hold (all of them for one process)."""
        shape = (*self.lead, *self.dataset.shape)
        rows = [
            index[self.batch_axis].indices(self.batch_size)[:2]
            for index in self.sharding.addressable_devices_indices_map(shape).values()
        ]
        return slice(min(r[0] for r in rows), max(r[1] for r in rows))

    def indices(self, first_step: int) -> np.ndarray:
        """The examples of the dispatch starting at ``first_step``: int32 ``(n_fused,
        [num_seeds,] d_steps, batch_size)``, computed on the host CPU."""
        steps = np.arange(first_step, first_step + self.n_fused, dtype=np.int32)
        return np.asarray(self._indices(jax.device_put(steps, self._cpu)))

    def read(self, first_step: int) -> tuple[np.ndarray, np.ndarray]:
        """The host arrays of the dispatch starting at ``first_step``: uint8 images and int32
        labels of this process's rows (:attr:`rows`)."""
        index = self.indices(first_step)[..., self.rows]
        flat = index.reshape(-1)
        images = np.empty((flat.size, *self.dataset.shape), np.uint8)
        labels = np.zeros(flat.size, np.int32)
        for j, i in enumerate(flat):
            images[j], labels[j] = self.source[int(i)]
        return images.reshape(*index.shape, *self.dataset.shape), labels.reshape(index.shape)

    def _read(self, dispatch: int):
        return self.read(int(dispatch) * self.n_fused)

    def _place(self, local: np.ndarray) -> jax.Array:
        lo, axis = self.rows.start, self.batch_axis

        def shard(index):
            start, stop, _ = index[axis].indices(self.batch_size)
            index = (*index[:axis], slice(start - lo, stop - lo), *index[axis + 1 :])
            return local[index]

        shape = (*self.lead, *local.shape[len(self.lead) :])
        return jax.make_array_from_callback(shape, self.sharding, shard)

    def start(self, step: int, saved: dict[str, Any] | None = None) -> None:
        """Positions the feed at iteration ``step`` (a multiple of ``steps_per_dispatch``):
        at the ``saved`` position of a checkpoint when it has one, after checking that it is
        the position of ``step``; at ``step`` itself for a checkpoint without one (written by
        the device loader, or before the Grain loader existed).

        Raises:
          RunError: the saved position is not that of ``step``.
        """
        expected = {"next_index": step // self.n_fused}
        position = expected
        if saved is not None:
            position = saved.get("grain_iterator")
            if saved.get("next_step") != step or position != expected:
                raise RunError(
                    f"The checkpoint at step {step} holds the data loader's position "
                    f"{saved!r}, not that of step {step} ({expected}): the checkpoint is "
                    "inconsistent. Resume from another step (move this one aside)."
                )
        self._iterator = iter(self._elements.to_iter_dataset(self._options))
        self._iterator.set_state(position)

    def __iter__(self):
        return self

    def __next__(self):
        images, labels = next(self._iterator)
        placed = self._place(images)
        return (placed, self._place(labels)) if self.labels else placed

    def position(self, step: int) -> dict[str, Any]:
        """What a checkpoint at ``step`` keeps of the feed: the Grain iterator's state (the
        next dispatch to read) and the step it belongs to."""
        state = self._iterator.get_state()
        if state != {"next_index": step // self.n_fused}:
            raise RunError(f"The data loader is at {state}, not at step {step}.")
        return {"loader": "grain", "next_step": int(step), "grain_iterator": state}

    def sample(self, key: jax.Array, num: int, value_range: tuple[float, float]) -> np.ndarray:
        """``num`` examples drawn with ``key`` as :func:`jaxgan.data.sample_batch` draws
        them (the same indices and values), read on the host."""
        index = np.asarray(data_lib.batch_indices(key, num, len(self.source)))
        images = np.stack([self.source[int(i)][0] for i in index])
        return np.asarray(data_lib.pixels_to_floats(images, value_range))
