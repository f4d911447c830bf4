"""Per-dataset evaluators: the metrics of a dataset, its real-data floor and its protocol.

:func:`make_evaluator` does the expensive, sample-independent work once (loading the real
data, the feature network, the real features and the floor) from explicit arguments (the
dataset, an ``idx_dir``, a sample count), and returns an :class:`Evaluator`, which turns
samples into metrics. The trainer calls one every ``eval_every`` steps; ``python -m
jaxgan.evaluate`` calls one on a checkpoint. Both draw the samples with
:class:`jaxgan.sampling.Sampler`, so they score the same samples.

* 2-D mixtures (``ring8``, ``grid25``): :func:`jaxgan.metrics.mode_coverage` (PacGAN: 2,500
  samples).
* ``mnist``, ``fashion_mnist``: FID, KID, classifier score, precision and recall (k = 3)
  and density and coverage (k = 5) on the features of
  :func:`jaxgan.classifier.get_classifier` against the whole test split (10,000 samples by
  default); the floor is the same of an equal-sized subset of ``train[:50000]``
  (:func:`real_data_floor`). On ``mnist`` also the Parzen log-likelihood of Goodfellow et
  al. 2014 (the first 10,000 samples, σ chosen on ``train[50000:51000]``, mean ± s.e.
  over the 10,000 test images), floor included.
* ``stacked_mnist``: modes of 1,000 and KL to uniform, each channel classified by the
  MNIST classifier (26,000 samples); the floor is the same of 26,000 real Stacked MNIST
  images built from the MNIST test split.

docs/EVALUATION.md gives the protocols and the published numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from jax.typing import ArrayLike

from jaxgan import classifier as classifier_lib
from jaxgan import data as data_lib
from jaxgan import inception_features, metrics
from jaxgan.errors import EvaluationError

__all__ = [
    "DEFAULT_NUM_SAMPLES",
    "EvaluationError",
    "Evaluator",
    "feature_floor",
    "make_evaluator",
    "make_inception_evaluator",
    "real_data_floor",
]

SampleFn = Callable[[int], ArrayLike]

MIXTURE_FLOOR_SEED = 0
"""The numpy seed of the real draws whose mode coverage is a 2-D mixture's floor."""

DEFAULT_NUM_SAMPLES = {"mixture": 2_500, "images": 10_000, "stacked_mnist": 26_000}
PARZEN_NUM_SAMPLES = 10_000
PARZEN_VALIDATION = (50_000, 51_000)  # 1,000 images of train[50000:60000]
TRAIN_SUBSET_RANGE = 50_000  # the real subset comes from train[:50000], apart from validation
KID_SUBSET_SIZE = 1000
SCORE_SPLITS = 10
INCEPTION_NUM_SAMPLES = 50_000  # as the papers: FID and IS of 50,000 samples
INCEPTION_REAL_NUM = 50_000  # real images of the reference split (all, for CIFAR-10 train)
PRECISION_RECALL_K = 3  # Kynkäänniemi et al. 2019
DENSITY_COVERAGE_K = 5  # Naeem et al. 2020


@dataclasses.dataclass
class Evaluator:
    """The metrics of one dataset, with their real-data floor and protocol.

    Call it with ``sample_fn(num) -> samples [num, *data_shape]`` (in the generator's
    output range); it draws ``num_samples`` samples once and returns the metrics as
    ``{name: float}``. For a class-conditional generator pass ``label_fn(num) -> the
    labels the samples were drawn with``; an evaluator made with ``num_classes`` then
    adds how often the classifier sees the requested class, and per-class FIDs.

    Attributes:
      dataset: the dataset's name.
      num_samples: samples drawn per call.
      floor: the same metrics of real data (for 2-D mixtures: fresh draws of the mixture).
      protocol: JSON-ready record of how the numbers are made.
      run: ``samples -> metrics``, the sample-dependent part.
    """

    dataset: str
    num_samples: int
    floor: dict[str, float]
    protocol: dict[str, Any]
    run: Callable[..., dict[str, float]]
    num_classes: int = 0

    def __call__(self, sample_fn: SampleFn, label_fn: SampleFn | None = None) -> dict[str, float]:
        samples = np.asarray(sample_fn(self.num_samples))
        if samples.shape[0] != self.num_samples:
            raise ValueError(f"sample_fn gave {samples.shape[0]} samples, not {self.num_samples}")
        if self.num_classes and label_fn is not None:
            return self.run(samples, np.asarray(label_fn(self.num_samples)))
        return self.run(samples)


def make_evaluator(
    dataset: data_lib.Dataset,
    *,
    output_range: tuple[float, float],
    idx_dir: str | None = None,
    num_samples: int | None = None,
    metric_seed: int = 0,
    parzen: bool = True,
    kid_subsets: int = 100,
    classifier: tuple[dict, str, dict] | None = None,
    cache_dir: str | None = None,
    log: Callable[[str], None] | None = None,
    num_classes: int = 0,
) -> Evaluator:
    """Builds the evaluator of a dataset (see the module docstring for each dataset).

    Args:
      dataset: the run's :class:`jaxgan.data.Dataset` (its ``name``, ``kind``, ``shape``;
        for mixtures its means and std; image arrays are not needed).
      output_range: the generator's output range (``GANModels.output_range``), to map
        image samples to [0, 1].
      idx_dir: the folder of the real data's IDX files (image datasets).
      num_samples: samples per evaluation (default :data:`DEFAULT_NUM_SAMPLES`).
      metric_seed: seed of the real subsets and of KID's subsets.
      parzen: compute the Parzen estimate on MNIST (10k × 10k: ~5-20 s on 2 cores).
      kid_subsets: KID's number of subsets of 1,000 (100, as Bińkowski et al.;
        ~3-9 s on 2 cores; fewer for a quick look during training).
      classifier: ``(params, hash, info)`` to use instead of ``get_classifier``.
      cache_dir: the classifier cache folder (default: see ``jaxgan.classifier``).
      log: optional callable receiving progress lines.
      num_classes: a class-conditional generator's number of classes (MNIST and
        Fashion-MNIST): the metrics gain ``class_accuracy`` (the share of samples the
        classifier gives the requested class; its floor: the classifier's accuracy on
        the train subset's real images, beside ``test_accuracy``), ``class_accuracy_<c>``
        and ``fid_class_<c>`` per class (floor: the train subset's images of class c
        against the test split's).

    Returns:
      An :class:`Evaluator`.

    Raises:
      EvaluationError: the dataset has no evaluation here, or its real data (IDX
        files) are not available.
    """
    name = dataset.name
    if dataset.kind == "mixture":
        means, std = np.asarray(dataset.arrays["means"]), float(dataset.std)
        num = num_samples or DEFAULT_NUM_SAMPLES["mixture"]
        protocol = {
            "metric": "mode coverage (PacGAN: high quality within 3 std of the nearest mode)",
            "num_samples": num,
            "num_modes": len(means),
            "std": std,
            "floor": f"{num} fresh draws of the mixture (numpy seed {MIXTURE_FLOOR_SEED}); "
            f"the expected high quality of real data is P(chi2_2 <= 9) = "
            f"{metrics.HIGH_QUALITY_OF_REAL_DATA:.4f}",
        }
        rng = np.random.default_rng(MIXTURE_FLOOR_SEED)
        real = means[rng.integers(0, len(means), num)] + std * rng.standard_normal((num, 2))
        floor = metrics.mode_coverage(real, means, std)
        return Evaluator(name, num, floor, protocol, lambda x: metrics.mode_coverage(x, means, std))

    if name not in (*data_lib.IDX_NAMES, data_lib.STACKED_MNIST):
        raise EvaluationError(
            f"No evaluation for dataset {name!r}: jaxgan evaluates the 2-D mixtures "
            f"{data_lib.MIXTURES}, {data_lib.IDX_NAMES} and {data_lib.STACKED_MNIST!r}."
        )
    if not idx_dir:
        raise EvaluationError(
            f"Evaluating {name!r} needs the real data: the run's config.data.idx_dir is empty; "
            "pass --idx_dir pointing at the folder of the four IDX .gz files."
        )
    source = "mnist" if name == data_lib.STACKED_MNIST else name
    try:
        train = data_lib.load_idx(idx_dir, name=source, split="train").arrays["images"]
        test = data_lib.load_idx(idx_dir, name=source, split="test").arrays["images"]
        test_labels = data_lib.load_idx_labels(idx_dir, split="test")
        train_labels = data_lib.load_idx_labels(idx_dir, split="train")
    except data_lib.DataError as e:
        raise EvaluationError(f"No real data for {name!r}: {e}") from e
    if classifier is None:
        classifier = classifier_lib.get_classifier(source, idx_dir, cache_dir=cache_dir, log=log)
    params, digest, info = classifier
    classifier_protocol = {
        "hash": digest,
        "dataset": source,
        "seed": info.get("seed"),
        "recipe_hash": info.get("recipe_hash"),
        "test_accuracy": info.get("test_accuracy"),
    }
    if name == data_lib.STACKED_MNIST:
        return _stacked_evaluator(
            params, classifier_protocol, idx_dir, output_range, num_samples, metric_seed
        )
    return _image_evaluator(
        name,
        params,
        classifier_protocol,
        train,
        test,
        test_labels,
        output_range=output_range,
        num=num_samples or DEFAULT_NUM_SAMPLES["images"],
        metric_seed=metric_seed,
        parzen=parzen and name == "mnist",
        kid_subsets=kid_subsets,
        log=log,
        train_labels=train_labels,
        num_classes=num_classes,
    )


def feature_floor(
    real: classifier_lib.RealFeatures,
    *,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = KID_SUBSET_SIZE,
) -> dict[str, float]:
    """FID, KID and classifier score of real data: the floor beside a generator's values.

    The train subset of ``real`` stands where generated samples would: ``fid`` and
    ``kid`` compare its features with the test split's; ``classifier_score`` is its score.

    Returns:
      ``{"fid", "kid", "kid_std", "classifier_score", "classifier_score_std", "precision",
      "recall", "density", "coverage"}``.
    """
    return metrics.feature_metrics(
        real.train_features,
        real.train_probs,
        real.test_features,
        seed=seed,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        score_splits=SCORE_SPLITS,
        prdc=True,
    )


def real_data_floor(
    params: dict,
    train_uint8: Any,
    test_uint8: Any,
    *,
    num: int | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = KID_SUBSET_SIZE,
) -> dict[str, float]:
    """:func:`feature_floor` of the test split and a ``num``-image train subset (default:
    the size of the test split, drawn with ``seed``), through the classifier ``params``."""
    real = classifier_lib.real_features(params, train_uint8, test_uint8, num=num, seed=seed)
    return feature_floor(real, seed=seed, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)


def _class_metrics(features, probs, labels, test_features, test_labels, num_classes):
    """``class_accuracy`` (overall and ``_<c>``) and ``fid_class_<c>`` of labelled features."""
    predicted = np.asarray(probs).argmax(axis=1)
    out = {"class_accuracy": float(np.mean(predicted == labels))}
    for c in range(num_classes):
        mine = labels == c
        out[f"class_accuracy_{c}"] = float(np.mean(predicted[mine] == c)) if mine.any() else np.nan
        out[f"fid_class_{c}"] = (
            metrics.frechet_distance_from_features(features[mine], test_features[test_labels == c])
            if mine.sum() > 1
            else np.nan
        )
    return out


def _image_evaluator(
    name, params, classifier_protocol, train, test, test_labels, *, output_range, num,
    metric_seed, parzen, kid_subsets, log, train_labels, num_classes,
) -> Evaluator:  # fmt: skip
    real = classifier_lib.real_features(
        params, train[:TRAIN_SUBSET_RANGE], test, num=len(test), seed=metric_seed
    )
    floor = feature_floor(real, seed=metric_seed, kid_subsets=kid_subsets)
    floor["test_accuracy"] = float(np.mean(real.test_probs.argmax(axis=1) == test_labels))
    if num_classes:
        subset_labels = np.asarray(train_labels[:TRAIN_SUBSET_RANGE])[real.train_index]
        floor.update(
            _class_metrics(
                real.train_features, real.train_probs, subset_labels, real.test_features,
                test_labels, num_classes,
            )
        )  # fmt: skip
    test01 = test.reshape(len(test), -1).astype(np.float32) / 255.0
    validation01 = (
        train[PARZEN_VALIDATION[0] : PARZEN_VALIDATION[1]].reshape(-1, test01.shape[1])
        .astype(np.float32) / 255.0
    )  # fmt: skip

    def parzen_metrics(samples01: np.ndarray) -> dict[str, float]:
        samples01 = samples01[:PARZEN_NUM_SAMPLES].reshape(-1, test01.shape[1])
        sigma, _ = metrics.parzen_select_sigma(samples01, validation01)
        ll, se = metrics.mean_and_standard_error(
            metrics.parzen_log_likelihood(samples01, test01, sigma)
        )
        return {"parzen_ll": ll, "parzen_se": se, "parzen_sigma": sigma}

    if parzen:
        if log is not None:
            log("Parzen floor: train subset vs test ...")
        subset01 = train[:TRAIN_SUBSET_RANGE][real.train_index].astype(np.float32) / 255.0
        floor.update(parzen_metrics(subset01))

    def run(samples: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
        samples01 = metrics.to_unit_interval(samples, output_range)
        features, probs = classifier_lib.features_and_probs(params, samples01)
        out = metrics.feature_metrics(
            features,
            probs,
            real.test_features,
            seed=metric_seed,
            kid_subsets=kid_subsets,
            kid_subset_size=KID_SUBSET_SIZE,
            score_splits=SCORE_SPLITS,
            prdc=True,
        )
        if parzen:
            out.update(parzen_metrics(samples01))
        if num_classes and labels is not None:
            out.update(
                _class_metrics(
                    features, probs, labels, real.test_features, test_labels, num_classes
                )
            )
        return out

    protocol = {
        "num_samples": num,
        "real": f"{name} test split ({len(test)} images)",
        "floor": f"{len(real.train_index)} images of {name} train[:{TRAIN_SUBSET_RANGE}] "
        f"(seed {metric_seed}, without replacement) in place of the samples",
        "metric_seed": metric_seed,
        "classifier": classifier_protocol,
        "kid": {
            "num_subsets": kid_subsets,
            "subset_size": KID_SUBSET_SIZE,
            "kernel": "(x.y/d + 1)^3",
            "seed": metric_seed,
        },
        "classifier_score_splits": SCORE_SPLITS,
        "precision_recall_k": PRECISION_RECALL_K,
        "density_coverage_k": DENSITY_COVERAGE_K,
    }
    if parzen:
        protocol["parzen"] = {
            "num_samples": min(num, PARZEN_NUM_SAMPLES),
            "sigma_grid": list(metrics.PARZEN_SIGMAS),
            "validation": f"train[{PARZEN_VALIDATION[0]}:{PARZEN_VALIDATION[1]}]",
            "test": f"test split ({len(test)} images), mean and s.e. (std/sqrt(n), ddof 0)",
            "pixels": "[0, 1], flattened",
        }
    if num_classes:
        protocol["classes"] = (
            f"samples balanced over {num_classes} requested classes; class_accuracy: the "
            "share the classifier assigns to the requested class (floor: its accuracy on the "
            "train subset's real images; test_accuracy: on the test split); "
            "fid_class_<c>: FID of class c's samples against class c of the test split"
        )
    return Evaluator(name, num, floor, protocol, run, num_classes=num_classes)


def _stacked_evaluator(
    params, classifier_protocol, idx_dir, output_range, num_samples, metric_seed
) -> Evaluator:
    num = num_samples or DEFAULT_NUM_SAMPLES["stacked_mnist"]

    def channel_labels(images01: np.ndarray) -> np.ndarray:
        n, h, w, c = images01.shape
        channels = np.moveaxis(images01, -1, 1).reshape(n * c, h, w, 1)
        _, probs = classifier_lib.features_and_probs(params, channels)
        return probs.argmax(axis=1).reshape(n, c)

    real = data_lib.stacked_mnist(idx_dir, split="test", num_examples=num, seed=metric_seed)
    predicted = channel_labels(real.arrays["images"].astype(np.float32) / 255.0)
    floor = metrics.stacked_mnist_modes(predicted)
    floor["channel_accuracy"] = float(np.mean(predicted == real.arrays["labels"]))

    def run(samples: np.ndarray) -> dict[str, float]:
        labels = channel_labels(metrics.to_unit_interval(samples, output_range))
        return metrics.stacked_mnist_modes(labels)

    protocol = {
        "num_samples": num,
        "metric": "modes = distinct digit triples of the channels (of 1000); KL(p || uniform)",
        "classifier": classifier_protocol,
        "floor": f"{num} real Stacked MNIST images from the MNIST test split (seed {metric_seed})",
        "metric_seed": metric_seed,
    }
    return Evaluator(data_lib.STACKED_MNIST, num, floor, protocol, run)


# ----------------------------------------------------------------------------- Inception
def make_inception_evaluator(
    weights: inception_features.InceptionWeights,
    load_split: Callable[[str], data_lib.Dataset],
    *,
    dataset_name: str,
    output_range: tuple[float, float],
    split: str = "train",
    floor_split: str | None = "test",
    num_samples: int | None = None,
    real_num: int = INCEPTION_REAL_NUM,
    metric_seed: int = 0,
    kid_subsets: int = 100,
    cache_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Evaluator:
    """The papers' metrics on the FID Inception network's features, for any image data.

    ``inception_fid``, ``inception_kid`` (± ``inception_kid_se``), ``inception_is`` (10
    splits, ± ``inception_is_std``), ``inception_precision`` and ``inception_recall``
    (k = 3), ``inception_density`` and ``inception_coverage`` (k = 5), all against the
    first ``real_num`` images of ``split``, whose features are computed once and cached
    (:func:`jaxgan.inception_features.real_statistics`). The floor is the same metrics of
    real images of ``floor_split`` in place of the samples (as many as the samples, at
    most the split), cached too.

    Args:
      weights: the network (:func:`jaxgan.inception_features.load_weights`).
      load_split: ``split -> Dataset`` of the real uint8 images.
      dataset_name: for the cache and the protocol.
      output_range: the generator's output range, to map samples to [0, 1].
      split: the reference split (``train``, as CIFAR-10's published FIDs).
      floor_split: the split of the floor; None for no floor.
      num_samples: samples per evaluation (default :data:`INCEPTION_NUM_SAMPLES`).
      real_num: images of the reference split.
      metric_seed: KID's subset seed.
      kid_subsets: KID's number of subsets of 1,000.
      cache_dir: the statistics' cache (default: see :mod:`jaxgan.inception_features`).
      log: progress lines.

    Raises:
      EvaluationError: the data are not images or a split cannot be read.
    """
    num = num_samples or INCEPTION_NUM_SAMPLES

    def statistics(which: str, count: int) -> inception_features.RealStatistics:
        try:
            data = load_split(which)
        except data_lib.DataError as e:
            raise EvaluationError(f"No {which} split of {dataset_name!r}: {e}") from e
        if data.kind != "images":
            raise EvaluationError(f"Inception metrics need images; {dataset_name!r} is 2-D data")
        return inception_features.real_statistics(
            weights, lambda: data.arrays["images"], dataset=dataset_name,
            fingerprint=data.fingerprint, split=which, num=count, cache_dir=cache_dir, log=log,
        )  # fmt: skip

    reference = statistics(split, real_num)
    floor: dict[str, float] = {}
    floor_count = None
    if floor_split is not None:
        held_out = statistics(floor_split, num)
        floor_count = len(held_out.features)
        floor = _inception_metrics(
            held_out.features, held_out.inception_score, reference, metric_seed, kid_subsets
        )

    def run(samples: np.ndarray) -> dict[str, float]:
        features, logits = inception_features.extract(
            weights, lambda a, b: metrics.to_unit_interval(samples[a:b], output_range),
            len(samples), what="samples", log=log,
        )  # fmt: skip
        score = metrics.inception_score(logits, splits=min(SCORE_SPLITS, len(logits)))
        return _inception_metrics(features, score, reference, metric_seed, kid_subsets)

    protocol = {
        **inception_features.PROTOCOL,
        "weights_sha256": weights.sha256,
        "weights_file": weights.path,
        "num_samples": num,
        "real": f"{dataset_name} {split} split, first {len(reference.features)} images "
        f"(requested {real_num})",
        "real_fingerprint": reference.key["fingerprint"],
        "real_statistics_cache": reference.path,
        "floor": None
        if floor_split is None
        else f"{floor_count} images of {dataset_name} {floor_split} in place of the samples",
        "kid": {"num_subsets": kid_subsets, "subset_size": KID_SUBSET_SIZE, "seed": metric_seed},
        "precision_recall_k": PRECISION_RECALL_K,
        "density_coverage_k": DENSITY_COVERAGE_K,
        "inception_score_splits": SCORE_SPLITS,
    }
    return Evaluator(dataset_name, num, floor, {"inception": protocol}, run)


def _inception_metrics(features, score, reference, seed, kid_subsets) -> dict[str, float]:
    features = np.asarray(features, np.float64)
    kid = metrics.kid_with_standard_error(
        features, reference.features, num_subsets=kid_subsets, subset_size=KID_SUBSET_SIZE,
        seed=seed,
    )  # fmt: skip
    manifold = metrics.manifold_metrics(reference.features, features)  # k = 3 and k = 5
    out = {
        "fid": metrics.frechet_distance(
            features.mean(axis=0), np.cov(features, rowvar=False), reference.mu, reference.sigma
        ),
        "kid": kid["kid"],
        "kid_se": kid["kid_se"],
        "is": score[0],
        "is_std": score[1],
        **manifold,
    }
    return {f"inception_{k}": float(v) for k, v in out.items()}
