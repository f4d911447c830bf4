"""Draw samples from a trained run.

    python -m jaxgan.sample --workdir=DIR --num=N --seed=S --out=FILE.npy [--step=K] [--raw]

Writes ``N`` samples as a float32 ``.npy`` array of shape ``[N, *data_shape]`` in the
generator's output range (the range the training data was scaled to: [-1, 1] for the
tanh DCGANs, [0, 1] for ``mlp``, data units for 2-D toys), from the newest checkpoint
or step ``K``, with the EMA generator unless ``--raw``. Beside it, ``FILE.png``: a
sample grid for image data, a scatter plot for 2-D data. The same seed gives the same
bytes.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import ml_collections
import numpy as np

from jaxgan import checkpointing, plots, steps
from jaxgan import state as state_lib
from jaxgan.checkpointing import RunError

CHUNK = 1000  # samples per generator call; fixed so that the output never depends on it


def sample_run(
    workdir: str,
    num: int,
    seed: int,
    *,
    step: int | None = None,
    ema: bool = True,
    seed_index: int = 0,
):
    """Returns ``(samples [num, *shape] float32, step, models, dataset_info)``."""
    config_path = os.path.join(workdir, checkpointing.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise RunError(f"{workdir} is not a jaxgan run folder (no {checkpointing.CONFIG_FILE}).")
    saved = checkpointing.read_json(config_path)
    config = ml_collections.ConfigDict(saved["config"])
    dataset_info = saved["dataset"]
    gan = state_lib.build_gan(config, tuple(dataset_info["shape"]))
    from jaxgan.trainer import make_keys

    num_seeds = config.get("num_seeds", 1)
    if not 0 <= seed_index < num_seeds:
        raise RunError(f"--seed_index must be in [0, {num_seeds}): the run trained {num_seeds}.")

    def init(s):
        return state_lib.create_state(gan, make_keys(s)["init"])

    if num_seeds == 1:
        abstract = jax.eval_shape(init, config.seed)
    else:  # the state of a num_seeds run has a leading seed axis
        abstract = jax.eval_shape(jax.vmap(init), config.seed + np.arange(num_seeds))
    manager = checkpointing.open_manager(workdir, keep=config.keep_checkpoints, read_only=True)
    try:
        restored = checkpointing.restore(
            manager, abstract, workdir, step=step, warn=lambda m: print(m, file=sys.stderr),
            quarantine=False,
        )  # fmt: skip
    finally:
        manager.close()
    if restored is None:
        raise RunError(f"{workdir} holds no checkpoint yet.")
    state, restored_step = restored
    if num_seeds > 1:
        state = jax.tree.map(lambda leaf: leaf[seed_index], state)
    params = state.g_ema_params if ema else state.g_params
    z = gan.models.sample_latent(jax.random.key(seed, impl="threefry2x32"), num)
    from jaxgan.trainer import compute_dtype

    model_state = state.g_model_state
    if ema:  # BatchNorm statistics of the EMA parameters themselves
        ema_state_fn = steps.make_ema_model_state_fn(
            gan, ema_decay=config.ema_decay, batch_size=config.batch_size,
            compute_dtype=compute_dtype(config),
        )  # fmt: skip
        model_state = jax.jit(ema_state_fn)(params, model_state)

    generate = jax.jit(steps.make_generate_fn(gan, compute_dtype(config)))
    chunks = []
    for start in range(0, num, CHUNK):
        chunk = z[start : start + CHUNK]
        if chunk.shape[0] < CHUNK:  # pad: one compiled shape, identical results per sample
            chunk = np.concatenate([chunk, np.zeros((CHUNK - len(chunk), z.shape[1]), z.dtype)])
        chunks.append(np.asarray(generate(params, model_state, chunk)))
    samples = np.concatenate(chunks)[:num] if chunks else np.zeros((0, *gan.models.data_shape))
    return samples.astype(np.float32), restored_step, gan.models, dataset_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.sample", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workdir", required=True, help="run folder written by train.py")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--out", required=True, help="output .npy file")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument("--raw", action="store_true", help="use G's parameters, not their EMA")
    parser.add_argument(
        "--seed_index", type=int, default=0,
        help="which of a num_seeds run's seeds to sample (0 = the config's seed)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices are noise here
    if args.num < 1:
        parser.error("--num must be positive")
    if not args.out.endswith(".npy"):
        parser.error("--out must name a .npy file")
    try:
        samples, step, models, info = sample_run(
            args.workdir, args.num, args.seed, step=args.step, ema=not args.raw,
            seed_index=args.seed_index,
        )  # fmt: skip
    except RunError as e:
        print(f"jaxgan.sample: error: {e}", file=sys.stderr)
        return 2
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    np.save(args.out, samples)
    png = args.out[: -len(".npy")] + ".png"
    title = f"{info['name']} step {step} ({'raw' if args.raw else 'EMA'} G, seed {args.seed})"
    if info["kind"] == "mixture":
        from jaxgan import data

        plots.save_scatter(png, samples, data.mixture(info["name"]).arrays["means"], title=title)
    else:
        plots.save_image_grid(png, samples[:100], models.output_range, title=title)
    print(f"Wrote {args.num} samples from step {step} to {args.out} and {png}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
