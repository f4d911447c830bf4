"""Draw samples from a trained run.

    python -m jaxgan.sample --workdir=DIR --num=N --seed=S --out=FILE.npy [--step=K] [--raw]
        [--class_label=C] [--truncation=T] [--method=plain|drs|mh [--chain_length=K]
        [--drs_percentile=P | --drs_gamma=G] [--idx_dir=IDX]]

Writes ``N`` samples as a float32 ``.npy`` array of shape ``[N, *data_shape]`` in the
generator's output range (the range the training data was scaled to: [-1, 1] for the
tanh DCGANs, [0, 1] for ``mlp``, data units for 2-D toys), from the newest checkpoint
or step ``K``, with the EMA generator unless ``--raw``. Beside it, ``FILE.png``: a
sample grid for image data, a scatter plot for 2-D data. The same seed gives the same
bytes; seed 0 gives the samples the trainer and ``jaxgan.evaluate`` score
(:mod:`jaxgan.sampling`).

A class-conditional run samples class ``C`` with ``--class_label=C``; without it (or with
-1) the samples are balanced over the classes, and their labels are written beside them
as ``FILE.labels.npy`` (int32 ``[N]``) either way. ``--truncation=T`` redraws every latent
coordinate beyond ``±T`` (the truncation trick, for generators with a normal prior).

``--method=drs`` (discriminator rejection sampling, Azadi et al. 2019) and ``--method=mh``
(MH-GAN, Turner et al. 2019) let the run's D choose among G's proposals, after calibrating
D on held-out real data (fresh draws for 2-D mixtures, the test split for images) and as
many generated samples (:mod:`jaxgan.guided`); the acceptance rate and the calibration are
printed and written to ``FILE.guided.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from absl import logging as absl_logging

from jaxgan import errors, files, flags, guided, plots, run_folder, sampling

PROG = "jaxgan.sample"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.sample", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--workdir", required=True, help="run folder written by train.py (required)"
    )
    parser.add_argument("--num", type=int, required=True, help="number of samples (required)")
    parser.add_argument(
        "--seed", type=int, default=sampling.EVAL_NOISE_SEED,
        help=f"noise seed (default {sampling.EVAL_NOISE_SEED}: the samples evaluation scores)",
    )  # fmt: skip
    parser.add_argument(
        "--out",
        required=True,
        help="output .npy file (required); a .png picture is written beside it",
    )
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="use G's own parameters, not their EMA (default: the EMA generator)",
    )
    parser.add_argument(
        "--seed_index", type=int, default=0,
        help="which of a num_seeds run's seeds to sample (default 0: the config's seed)",
    )  # fmt: skip
    parser.add_argument(
        "--class_label", type=int, default=None,
        help="class of every sample, for a class-conditional run (default, or -1: balanced "
        "over the classes)",
    )  # fmt: skip
    parser.add_argument(
        "--truncation", type=float, default=None,
        help="truncation trick: redraw latent coordinates beyond ±T (default: none)",
    )  # fmt: skip
    _add_method_flags(parser)
    args = parser.parse_args(argv)
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices are noise here
    if args.num < 1:
        parser.error("--num must be positive")
    if not args.out.endswith(".npy"):
        parser.error("--out must name a .npy file")
    flags.check_guided_flags(parser, args)
    if args.truncation is not None and not args.truncation > 0:
        parser.error(f"--truncation must be a positive threshold, got {args.truncation}")
    warn = lambda message: print(message, file=sys.stderr)
    try:
        run = run_folder.open_run(
            args.workdir, step=args.step, seed_index=args.seed_index, log=warn
        )
        labels = _labels(parser, run, args.class_label, args.num)
        if args.truncation is not None and run.gan.models.prior != "normal":
            parser.error(
                f"--truncation applies to a normal prior; {run.config.model.name}'s is "
                f"{run.gan.models.prior}, bounded already"
            )
        record = None
        if args.method == "plain":
            samples = run.sample(
                args.num, args.seed, ema=not args.raw, labels=labels, truncation=args.truncation
            )
        else:
            samples, record = run.sample_guided(
                args.num, args.seed, ema=not args.raw, truncation=args.truncation, log=warn,
                method=args.method, idx_dir=args.idx_dir, **flags.guided_settings(args),
            )  # fmt: skip
    except errors.JaxganError as e:
        return errors.report(PROG, e)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.save(args.out, samples)
    stem = args.out[: -len(".npy")]
    if labels is not None:
        np.save(stem + ".labels.npy", labels)
    if record is not None:
        files.write_json_atomic(stem + ".guided.json", record)
    png = stem + ".png"
    label = sampling.generator_label(run.config.ema_decay, ema=not args.raw)
    title = f"{run.dataset.name} step {run.step} ({label}, seed {args.seed}"
    if args.class_label is not None and args.class_label >= 0:
        title += f", class {args.class_label}"
    if args.truncation is not None:
        title += f", truncation {args.truncation:g}"
    if record is not None:
        title += f", {args.method.upper()}"
    title += ")"
    if run.dataset.kind == "mixture":
        plots.save_scatter(
            png, samples, run.dataset.arrays["means"], title=title, std=run.dataset.std
        )
    else:
        balanced = labels is not None and (args.class_label is None or args.class_label == -1)
        ncols = run.gan.models.num_classes if balanced else None  # column c: class c
        plots.save_image_grid(
            png, samples[:100], run.gan.models.output_range, title=title, ncols=ncols
        )
    beside = f" (labels in {stem}.labels.npy)" if labels is not None else ""
    if record is not None:
        print(guided.summary(record) + ".")
        beside += f" (the guided draw's record in {stem}.guided.json)"
    print(f"Wrote {args.num} samples from step {run.step} to {args.out} and {png}{beside}.")
    return 0


def _add_method_flags(parser: argparse.ArgumentParser) -> None:
    flags.add_guided_flags(
        parser,
        method_help="plain: G alone (default); drs: discriminator rejection sampling (Azadi "
        "et al. 2019); mh: Metropolis-Hastings GAN (Turner et al. 2019)",
    )
    parser.add_argument(
        "--idx_dir", default=None,
        help="drs/mh on IDX images: the folder whose test split calibrates D (default: the "
        "run's)",
    )  # fmt: skip


def _labels(parser, run, class_label: int | None, num: int) -> np.ndarray | None:
    """The samples' labels: ``class_label`` for all, or balanced (None / -1); None for an
    unconditional run, which refuses a ``--class_label``."""
    models = run.gan.models
    if not models.conditional:
        if class_label is not None and class_label != -1:
            parser.error(
                f"--class_label: {run.workdir} is not a class-conditional run "
                f"(model.conditioning={run.config.model.get('conditioning', 'none')!r})"
            )
        return None
    if class_label is None or class_label == -1:
        return run.sampler.labels_for(num)
    if not 0 <= class_label < models.num_classes:
        parser.error(
            f"--class_label must be in [0, {models.num_classes}) (or -1: balanced), got "
            f"{class_label}"
        )
    return np.full(num, class_label, np.int32)


def entry_point() -> None:
    """``jaxgan-sample``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
