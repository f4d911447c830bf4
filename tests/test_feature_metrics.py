"""Metrics on any feature network: precision/recall, density/coverage, IS, KID's s.e.

Precision, recall, density and coverage are checked against prdc (Naeem et al.'s
package, in the ``test`` extra), an independent implementation through scikit-learn's
distances; the rest against hand-computed values.
"""

import contextlib
import io
import math
import tracemalloc

import numpy as np
import prdc
import pytest

from jaxgan import metrics


def _reference(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        return {name: float(v) for name, v in prdc.compute_prdc(real, fake, k).items()}


def _sets(seed, n, m, d):
    """Real N(0, I) and fake N(0.3, 1.2² I): overlapping, so no metric is 0 or 1."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(0.3, 1.2, size=(m, d))


# ----------------------------------------------------------------------------
# Against prdc
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed, n, m, d", [(0, 300, 250, 8), (1, 200, 320, 16), (2, 400, 400, 64), (3, 150, 90, 32)]
)
@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_precision_recall_density_coverage_equal_prdc(seed, n, m, d, k):
    real, fake = _sets(seed, n, m, d)
    reference = _reference(real, fake, k)
    pr = metrics.precision_recall(real, fake, k=k)
    dc = metrics.density_coverage(real, fake, k=k)
    # Fractions of the same counts: equal exactly (continuous data, so no distance lies
    # on a radius and prdc's < and our <= agree).
    assert pr["precision"] == reference["precision"]
    assert pr["recall"] == reference["recall"]
    assert dc["coverage"] == reference["coverage"]
    assert dc["density"] == pytest.approx(reference["density"], rel=0, abs=1e-12)
    assert any(0 < v < 1 for v in (pr["precision"], pr["recall"], dc["coverage"]))


def test_the_defaults_are_the_papers_k_and_equal_prdc_at_them():
    real, fake = _sets(4, 300, 300, 16)
    assert metrics.precision_recall(real, fake) == {
        name: _reference(real, fake, 3)[name] for name in ("precision", "recall")
    }
    reference = _reference(real, fake, 5)
    dc = metrics.density_coverage(real, fake)
    assert dc["coverage"] == reference["coverage"]
    assert dc["density"] == pytest.approx(reference["density"], rel=0, abs=1e-12)


def test_float32_features_give_prdcs_values_of_the_same_float32_features():
    real, fake = (f.astype(np.float32) for f in _sets(5, 250, 200, 32))
    reference = _reference(real.astype(np.float64), fake.astype(np.float64), 3)
    assert metrics.precision_recall(real, fake) == {
        "precision": reference["precision"],
        "recall": reference["recall"],
    }


@pytest.mark.parametrize("chunk", [1, 7, 64, 299])
def test_chunked_distances_give_the_unchunked_values(chunk):
    real, fake = _sets(6, 300, 260, 16)
    for k in (1, 3, 5):
        whole = metrics.precision_recall(real, fake, k=k, chunk=10**6)
        assert metrics.precision_recall(real, fake, k=k, chunk=chunk) == whole
        whole = metrics.density_coverage(real, fake, k=k, chunk=10**6)
        assert metrics.density_coverage(real, fake, k=k, chunk=chunk) == whole


def test_a_chunked_pass_never_holds_an_n_by_n_matrix():
    real, fake = _sets(7, 2000, 2000, 8)
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        metrics.precision_recall(real, fake, chunk=50)
        metrics.density_coverage(real, fake, chunk=50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2000 * 2000 * 8 / 8  # an eighth of one 2,000 × 2,000 float64 matrix


def test_points_on_a_radius_are_inside_as_in_the_authors_code_but_not_in_prdc():
    # Integer points: every squared distance is exact, so the tie is a real one.
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[-1.0], [10.0], [11.0], [13.0]])  # -1 lies on real 0's ball (r = 1)
    assert metrics.precision_recall(real, fake, k=1)["precision"] == 0.25
    assert metrics.density_coverage(real, fake, k=1) == {"density": 0.25, "coverage": 0.25}
    assert _reference(real, fake, 1)["precision"] == 0.0  # prdc: strictly inside


def test_feature_metrics_adds_the_four_only_when_asked():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(120, 6)), rng.normal(0.2, 1.0, size=(100, 6))
    probs = rng.dirichlet(np.ones(4), size=100)
    kwargs = {"kid_subsets": 3, "kid_subset_size": 50}
    plain = metrics.feature_metrics(fake, probs, real, **kwargs)
    assert set(plain) == {"fid", "kid", "kid_std", "classifier_score", "classifier_score_std"}
    full = metrics.feature_metrics(fake, probs, real, prdc=True, **kwargs)
    assert {name: full[name] for name in plain} == plain
    assert {name: full[name] for name in ("precision", "recall")} == metrics.precision_recall(
        real, fake, k=3
    )
    assert {name: full[name] for name in ("density", "coverage")} == metrics.density_coverage(
        real, fake, k=5
    )


# ----------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("same_object", [False, True])
def test_identical_sets(k, same_object):
    real = np.random.default_rng(9).normal(size=(200, 16))
    fake = real if same_object else real.copy()
    assert metrics.precision_recall(real, fake, k=k) == {"precision": 1.0, "recall": 1.0}
    # Each real ball holds its centre's copy and its k nearest neighbours' copies, the
    # k-th on the boundary (<=): density (k + 1) / k exactly (1.2 at k = 5; prdc's <: 1).
    assert metrics.density_coverage(real, fake, k=k) == {
        "density": (k + 1) / k,
        "coverage": 1.0,
    }


def test_independent_sets_of_one_distribution_have_density_about_one():
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(1500, 8)), rng.normal(size=(1500, 8))
    assert metrics.density_coverage(real, fake)["density"] == pytest.approx(1.0, abs=0.1)


def test_disjoint_far_apart_sets_score_zero():
    real, fake = _sets(11, 100, 80, 8)
    far = fake + 1000.0
    assert metrics.precision_recall(real, far) == {"precision": 0.0, "recall": 0.0}
    assert metrics.density_coverage(real, far) == {"density": 0.0, "coverage": 0.0}


def test_a_subset_of_the_real_support_has_full_precision_and_partial_recall():
    cluster = np.random.default_rng(12).normal(size=(100, 4))
    real = np.concatenate([cluster, cluster + 100.0])  # two modes
    fake = real[:100]  # one of them: every fake is a real sample
    pr = metrics.precision_recall(real, fake)
    assert pr == {"precision": 1.0, "recall": 0.5}
    assert metrics.density_coverage(real, fake)["coverage"] == 0.5
    # Within the real support, but only its middle: still all inside, recall < 1.
    grid = np.random.default_rng(13).uniform(-1.0, 1.0, size=(400, 2))
    middle = grid[np.abs(grid).max(axis=1) < 0.5]
    pr = metrics.precision_recall(grid, middle)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.6


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("function", [metrics.precision_recall, metrics.density_coverage])
def test_bad_inputs_raise_value_errors_that_say_what_is_wrong(function):
    with pytest.raises(ValueError, match=r"same d.*\(10, 3\) and \(10, 4\)"):
        function(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"\[N, d\].*\(10,\) and \(10, 3\)"):
        function(np.zeros(10), np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"fake_features: more than k = 5 rows.*\(5, 3\)"):
        function(np.ones((10, 3)), np.ones((5, 3)), k=5)
    with pytest.raises(ValueError, match=r"real_features: more than k = 3 rows.*\(3, 2\)"):
        function(np.ones((3, 2)), np.ones((10, 2)), k=3)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        function(np.ones((10, 3)), np.ones((10, 3)), k=0)
    with pytest.raises(ValueError, match=r"k must be a positive integer, got 2\.5"):
        function(np.ones((10, 3)), np.ones((10, 3)), k=2.5)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        function(np.ones((10, 3)), np.ones((10, 3)), chunk=0)
    nan = np.ones((10, 3))
    nan[4, 1] = np.nan
    with pytest.raises(ValueError, match="fake_features must be finite"):
        function(np.ones((10, 3)), nan)


def test_inception_score_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match=r"N >= splits.*\(5, 3\), splits 10"):
        metrics.inception_score(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(12,\)"):
        metrics.inception_score(np.zeros(12))
    with pytest.raises(ValueError, match="from_logits=True for logits"):
        metrics.inception_score(np.ones((20, 3)), from_logits=False)


# ----------------------------------------------------------------------------
# Inception Score
# ----------------------------------------------------------------------------


def test_inception_score_of_uniform_logits_is_one():
    score, std = metrics.inception_score(np.zeros((50, 1008)))
    assert score == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    score, _ = metrics.inception_score(np.full((50, 10), 0.1), from_logits=False)
    assert score == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 10, 1008])
def test_inception_score_of_confident_even_predictions_is_the_number_of_classes(classes):
    logits = 200.0 * np.tile(np.eye(classes), (10, 1))  # each split: one of each class
    score, std = metrics.inception_score(logits)
    assert score == pytest.approx(classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_gives_the_mean_and_std_over_ten_known_splits():
    classes = 12
    per_split = [1, 2, 3, 4, 6, 12, 1, 2, 3, 4]  # one-hot over that many classes, evenly
    probs = np.concatenate(
        [np.eye(classes)[np.arange(classes) % c] for c in per_split]
    )  # 12 rows a split: a split with c classes scores exactly c
    score, std = metrics.inception_score(probs, from_logits=False)
    assert score == pytest.approx(np.mean(per_split), rel=1e-12)
    assert std == pytest.approx(np.std(per_split), rel=1e-12)
    logit_score = metrics.inception_score(60.0 * probs)
    assert logit_score == pytest.approx((score, std), rel=1e-12)


def test_inception_score_splits_at_i_n_over_splits_as_the_original_code():
    # 11 rows in 10 splits: the original code's last split has two rows (np.array_split
    # would give the first split two); a one-row split always scores 1.
    probs = np.eye(2)[[0] * 10 + [1]]
    score, std = metrics.inception_score(probs, from_logits=False)
    assert score == pytest.approx((9 * 1.0 + 2.0) / 10, rel=1e-12)
    assert std == pytest.approx(np.std([1.0] * 9 + [2.0]), rel=1e-12)


def test_inception_score_is_classifier_score_of_the_softmax_per_split():
    logits = np.random.default_rng(14).normal(0.0, 3.0, size=(100, 7))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert metrics.inception_score(logits, splits=1) == pytest.approx(
        metrics.classifier_score(probs), rel=1e-12
    )
    # 100 rows in 10 splits: both cut at the same places.
    assert metrics.inception_score(logits) == pytest.approx(
        metrics.classifier_score(probs, splits=10), rel=1e-12
    )


# ----------------------------------------------------------------------------
# KID's standard error
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_subsets", [1, 4, 25])
def test_kid_standard_error_is_std_over_root_num_subsets(num_subsets):
    rng = np.random.default_rng(15)
    x, y = rng.normal(size=(300, 8)), rng.normal(0.2, 1.0, size=(250, 8))
    kwargs = {"num_subsets": num_subsets, "subset_size": 100, "seed": 3}
    out = metrics.kid_with_standard_error(x, y, **kwargs)
    kid, kid_std = metrics.kernel_inception_distance(x, y, **kwargs)
    assert (out["kid"], out["kid_std"]) == (kid, kid_std)  # the same subsets
    assert out["kid_se"] == pytest.approx(kid_std / math.sqrt(num_subsets), rel=1e-15)
    if num_subsets > 1:
        assert out["kid_se"] > 0
