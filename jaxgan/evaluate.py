"""Evaluate a trained run: the command line.

    python -m jaxgan.evaluate --workdir=DIR [--step=K] [--num_samples=N] [--seed=S]
        [--idx_dir=IDX] [--no_parzen] [--cache_dir=DIR] [--raw] [--seed_index=I]
        [--inception_weights=FILE [--inception_samples=N] [--inception_split=train]]
        [--method=plain|drs|mh [--chain_length=K] [--drs_percentile=P | --drs_gamma=G]]

writes ``DIR/eval.json``: every metric that applies to the run's dataset, the same
metrics of real data (the *floor*), and the protocol (sample counts, seeds, splits,
the classifier's hash, the jaxgan version, the checkpoint step). The samples are those
of :mod:`jaxgan.sampling` with noise seed ``S`` (default 0, as the trainer's ``eval_*``
metrics), so at the same checkpoint and sample count the numbers are the trainer's.

With ``--inception_weights`` (or ``$JAXGAN_INCEPTION_WEIGHTS``) naming pytorch-fid's
weights file, the papers' metrics are added on any image dataset: FID, KID, IS, precision
and recall, density and coverage on 50,000 samples against the real split's features,
computed once and cached (docs/EVALUATION.md).

With ``--method=drs`` or ``--method=mh`` the samples are drawn with the run's D guiding G
(:mod:`jaxgan.guided`, as ``jaxgan.sample --method``); the scores go to ``eval_drs.json``
or ``eval_mh.json`` (``eval_raw_drs.json`` ... with ``--raw``), beside the plain ones, with
the draw's acceptance rate and D's calibration in ``protocol.guided``.

The metrics are :mod:`jaxgan.metrics`; the per-dataset evaluators
:mod:`jaxgan.evaluators`. (Their names were importable from this module before 0.2 and
still are, with a DeprecationWarning.)
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import jax

import jaxgan
from jaxgan import data as data_lib
from jaxgan import (
    errors,
    evaluators,
    files,
    flags,
    guided,
    inception_features,
    metrics,
    run_folder,
    sampling,
)

PROG = "jaxgan.evaluate"


def evaluate_run(
    workdir: str,
    *,
    step: int | None = None,
    num_samples: int | None = None,
    seed: int = sampling.EVAL_NOISE_SEED,
    seed_index: int = 0,
    raw: bool = False,
    idx_dir: str | None = None,
    parzen: bool = True,
    kid_subsets: int = 100,
    cache_dir: str | None = None,
    inception: inception_features.InceptionWeights | None = None,
    inception_samples: int | None = None,
    inception_split: str = "train",
    inception_real_num: int = evaluators.INCEPTION_REAL_NUM,
    inception_cache_dir: str | None = None,
    method: str = "plain",
    guided_settings: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluates a run folder's checkpoint; returns eval.json's record.

    The samples come from the EMA generator, or from G's own parameters when ``raw``.
    ``num_samples`` defaults to the run's ``num_eval_samples`` on 2-D data and to the
    evaluator's default on image data. With ``inception`` (the network's weights), the
    Inception metrics of :func:`jaxgan.evaluators.make_inception_evaluator` are added, on
    ``inception_samples`` samples (default 50,000) of the same noise seed, against real
    statistics cached in ``inception_cache_dir`` (default ``$JAXGAN_CACHE/inception``).
    ``method`` ``"drs"`` or ``"mh"`` draws them with D's guidance
    (:meth:`jaxgan.run_folder.TrainedRun.sample_guided` with ``guided_settings``).

    Raises:
      jaxgan.errors.JaxganError: with a one-line message for the user.
    """
    saved = run_folder.read_config(workdir)
    config, dataset = saved.config, saved.dataset
    idx_dir = idx_dir or config.data.get("idx_dir", "") or None
    if num_samples is None and dataset.kind == "mixture":
        num_samples = config.get("num_eval_samples", None) or None
    if inception is not None and dataset.kind != "images":
        raise errors.EvaluationError(
            f"Inception metrics need images; {dataset.name!r} is 2-D data (its metric is mode "
            "coverage): evaluate without --inception_weights."
        )
    # The evaluators first: missing real data is reported before any checkpoint is read.
    chosen = []
    try:
        chosen.append(
            evaluators.make_evaluator(
                dataset,
                output_range=saved.gan.models.output_range,
                idx_dir=idx_dir,
                num_samples=num_samples,
                parzen=parzen,
                kid_subsets=kid_subsets,
                cache_dir=cache_dir,
                log=log,
                num_classes=saved.gan.models.num_classes,
            )
        )
    except errors.EvaluationError:
        if inception is None or dataset.name in (*data_lib.IDX_NAMES, data_lib.STACKED_MNIST):
            raise  # no evaluation at all, or this dataset's own evaluation cannot run
    if inception is not None:
        # Held on the host: the run's budget is the device loader's (a streamed run's data
        # is over it by design).
        data_config = {**config.data.to_dict(), "idx_dir": idx_dir or "", "memory_budget_bytes": 0}

        def load_split(split: str) -> data_lib.Dataset:
            return data_lib.load(types.SimpleNamespace(**{**data_config, "split": split}))

        chosen.append(
            evaluators.make_inception_evaluator(
                inception,
                load_split,
                dataset_name=dataset.name,
                output_range=saved.gan.models.output_range,
                split=inception_split,
                floor_split=_other_split(inception_split),
                num_samples=inception_samples,
                real_num=inception_real_num,
                kid_subsets=kid_subsets,
                cache_dir=inception_cache_dir,
                log=log,
            )
        )
    run = run_folder.open_run(workdir, step=step, seed_index=seed_index, log=log)
    sample_fn, guided_records = _sample_fn(run, seed, raw, method, guided_settings, idx_dir, log)
    scores, floor, protocol = {}, {}, {}
    for evaluator in chosen:
        if log is not None:
            log(f"Evaluating {workdir} on {evaluator.num_samples} samples ...")
        scores.update(evaluator(sample_fn, run.sampler.labels_for))
        floor.update(evaluator.floor)
        protocol.update(evaluator.protocol)
    generator = "raw" if raw else "EMA" if config.ema_decay > 0 else "raw (ema_decay 0)"
    if guided_records:
        protocol["guided"] = guided_records[0] if len(guided_records) == 1 else guided_records
    return {
        "step": run.step,
        "metrics": scores,
        "real_data_floor": floor,
        "protocol": {
            **protocol,
            "dataset": run.dataset.name,
            "dataset_fingerprint": run.fingerprint or None,
            "checkpoint_step": run.step,
            "generator": generator,
            "sample_seed": seed,
            "seed_index": seed_index,
            "jaxgan_version": jaxgan.__version__,
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
        },
    }


def _sample_fn(run, seed, raw, method, settings, idx_dir, log):
    """The evaluators' ``sample_fn(num)`` and the records of its guided draws (a list)."""
    if method == "plain":
        return (lambda num: run.sample(num, seed, ema=not raw)), []
    if method not in sampling.METHODS:
        raise sampling.GuidedSamplingError(f"method must be one of {sampling.METHODS}")
    settings = {**sampling.GUIDED_DEFAULTS, **(settings or {})}
    real = run.held_out_real(2 * settings["calibration_num"], idx_dir=idx_dir)
    if settings["refine_steps"]:
        settings["train_real"] = run.training_real(run_folder.TRAINING_REAL_NUM, idx_dir=idx_dir)
    records = []

    def sample_fn(num):
        samples, record = run.sample_guided(
            num, seed, method=method, real=real, ema=not raw, log=log, **settings
        )
        records.append(record)
        if log is not None:
            log(guided.summary(record))
        return samples

    return sample_fn, records


def eval_file(*, raw: bool, method: str) -> str:
    """eval.json's name for G's own parameters (``raw``) and a sampling ``method``."""
    name = run_folder.RAW_EVAL_FILE if raw else run_folder.EVAL_FILE
    if method == "plain":
        return name
    return name.replace(".json", f"_{method}.json")


def _other_split(split: str) -> str | None:
    """The floor's split beside the reference split: test beside train, and back."""
    base = split.split("[")[0]
    return {"train": "test", "test": "train"}.get(base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.evaluate",
        description="Evaluate a trained run; writes eval.json in the run folder.",
    )
    parser.add_argument(
        "--workdir", required=True, help="run folder written by train.py (required)"
    )
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument(
        "--num_samples", type=int, default=None,
        help="samples (default: the run's num_eval_samples on 2-D data, 10,000 on "
        "mnist/fashion_mnist, 26,000 on stacked_mnist)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=sampling.EVAL_NOISE_SEED,
        help=f"generator noise seed (default {sampling.EVAL_NOISE_SEED}, the trainer's)",
    )  # fmt: skip
    parser.add_argument(
        "--seed_index", type=int, default=0, help="which seed of a num_seeds run (default 0)"
    )
    parser.add_argument(
        "--raw", action="store_true",
        help=f"G's own parameters, not their EMA; writes {run_folder.RAW_EVAL_FILE} instead of "
        f"{run_folder.EVAL_FILE} (default: the EMA generator)",
    )  # fmt: skip
    parser.add_argument("--idx_dir", default=None, help="IDX folder (default: the run's)")
    parser.add_argument(
        "--no_parzen",
        action="store_true",
        help="skip the Parzen estimate (MNIST; default: computed)",
    )
    parser.add_argument(
        "--kid_subsets", type=int, default=100,
        help="KID's subsets of 1,000 (default 100, as Binkowski et al.; the trainer uses 10)",
    )  # fmt: skip
    parser.add_argument(
        "--cache_dir",
        default=None,
        help="classifier cache folder (default: $JAXGAN_CACHE/classifiers, or "
        "~/.cache/jaxgan/classifiers; the real Inception statistics go in "
        "$JAXGAN_CACHE/inception)",
    )
    parser.add_argument(
        "--inception_weights", default=os.environ.get(inception_features.ENV_VAR) or None,
        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth: adds FID, KID, IS, "
        "precision/recall and density/coverage on the FID Inception network (default: "
        f"${inception_features.ENV_VAR}; checked by its sha256, read without torch)",
    )  # fmt: skip
    parser.add_argument(
        "--inception_samples", type=int, default=evaluators.INCEPTION_NUM_SAMPLES,
        help=f"samples of the Inception metrics (default {evaluators.INCEPTION_NUM_SAMPLES:,})",
    )  # fmt: skip
    parser.add_argument(
        "--inception_split", default="train",
        help="real split the Inception metrics compare with (default train; the floor is "
        "the other split)",
    )  # fmt: skip
    parser.add_argument(
        "--inception_real_num", type=int, default=evaluators.INCEPTION_REAL_NUM,
        help=f"images of that split (default {evaluators.INCEPTION_REAL_NUM:,}, its start)",
    )  # fmt: skip
    flags.add_guided_flags(
        parser,
        method_help="plain: G alone (default); drs or mh: D guides G (jaxgan.sample --help); "
        "writes eval_drs.json / eval_mh.json",
    )
    args = parser.parse_args(argv)
    flags.check_guided_flags(parser, args)
    if args.num_samples is not None and args.num_samples < 2:
        parser.error("--num_samples must be at least 2")
    if args.kid_subsets < 1:
        parser.error("--kid_subsets must be positive")
    if args.inception_samples < 2 or args.inception_real_num < 2:
        parser.error("--inception_samples and --inception_real_num must be at least 2")
    log = lambda message: print(message, file=sys.stderr)
    try:
        inception = None
        if args.inception_weights:
            inception = inception_features.load_weights(args.inception_weights)
        record = evaluate_run(
            args.workdir,
            step=args.step,
            num_samples=args.num_samples,
            seed=args.seed,
            seed_index=args.seed_index,
            raw=args.raw,
            idx_dir=args.idx_dir,
            parzen=not args.no_parzen,
            kid_subsets=args.kid_subsets,
            cache_dir=args.cache_dir,
            inception=inception,
            inception_samples=args.inception_samples,
            inception_split=args.inception_split,
            inception_real_num=args.inception_real_num,
            method=args.method,
            guided_settings=flags.guided_settings(args),
            log=log,
        )
    except errors.JaxganError as e:
        return errors.report(PROG, e)
    path = os.path.join(args.workdir, eval_file(raw=args.raw, method=args.method))
    files.write_json_atomic(path, record)
    floor = record["real_data_floor"]
    summary = ", ".join(
        f"{k} {v:.4g}" + (f" (real data {floor[k]:.4g})" if k in floor else "")
        for k, v in record["metrics"].items()
    )
    if "guided" in record["protocol"]:
        summary = f"{args.method}: {summary}"
    print(f"Step {record['step']}: {summary}. Wrote {path}.")
    return 0


# Names that lived here before 0.2: the metrics and the evaluators.
_MOVED = {
    **dict.fromkeys(metrics.__all__, metrics),
    **dict.fromkeys(("EvaluationError", "Evaluator", "make_evaluator"), evaluators),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(
            f"jaxgan.evaluate.{name} moved to {module.__name__}.{name}", DeprecationWarning, 2
        )
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def entry_point() -> None:
    """``jaxgan-evaluate``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
