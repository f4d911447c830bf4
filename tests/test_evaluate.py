"""Tests for jaxgan.evaluate: metrics with known answers, the evaluators, the CLI."""

import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.linalg

from jaxgan import classifier, data, evaluate, evaluators, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------
# Mode coverage
# ----------------------------------------------------------------------------


def test_samples_at_the_modes_cover_all_25_with_no_kl():
    means = data.mixture("grid25").arrays["means"]
    result = metrics.mode_coverage(np.repeat(means, 100, axis=0), means, 0.05)
    assert result == {"modes": 25.0, "high_quality": 1.0, "reverse_kl": 0.0}


def test_samples_at_one_mode_cover_one():
    means = data.mixture("grid25").arrays["means"]
    result = metrics.mode_coverage(np.repeat(means[:1], 50, axis=0), means, 0.05)
    assert result["modes"] == 1.0 and result["high_quality"] == 1.0
    assert result["reverse_kl"] == pytest.approx(math.log(25))


def test_samples_far_from_every_mode_are_not_high_quality():
    means = data.mixture("ring8").arrays["means"]
    result = metrics.mode_coverage(np.full((10, 2), 5.0), means, 0.01)
    assert result["modes"] == 0.0 and result["high_quality"] == 0.0
    assert result["reverse_kl"] == math.inf


def _mixture_draws(name, num_per_mode, seed=0):
    ds = data.mixture(name)
    means = np.asarray(ds.arrays["means"], np.float64)
    rng = np.random.default_rng(seed)
    x = means.repeat(num_per_mode, axis=0) + ds.std * rng.standard_normal(
        (len(means) * num_per_mode, 2)
    )
    return x, means, ds.std


def test_bound_of_a_generator_that_is_the_mixture_is_the_real_data_ceiling():
    x, means, std = _mixture_draws("grid25", 40_000)
    bound = metrics.mode_coverage_bound(x, means, std, draws_per_mode=4_000)
    assert bound["modes"] == 25.0 and bound["reverse_kl"] < 0.002
    assert bound["high_quality"] == pytest.approx(metrics.HIGH_QUALITY_OF_REAL_DATA, abs=0.005)
    assert bound["support_mass"] > 0.97 and min(bound["mode_support"]) > 0.95


def test_bound_gives_a_half_covered_mode_half_its_share_and_a_missed_mode_none():
    x, means, std = _mixture_draws("ring8", 40_000)
    per_mode = x.reshape(8, 40_000, 2)
    half = per_mode[0][per_mode[0][:, 0] > means[0, 0]]  # mode 0 only right of its centre
    generated = np.concatenate([half, *per_mode[2:]])  # and mode 1 not at all
    bound = metrics.mode_coverage_bound(generated, means, std, draws_per_mode=20_000)
    support = bound["mode_support"]
    assert support[0] == pytest.approx(0.5, abs=0.03) and support[1] == 0.0
    assert min(support[2:]) > 0.95 and bound["modes"] == 7.0
    q = np.array([0.5, 1, 1, 1, 1, 1, 1]) / 6.5  # the restricted mixture's mode shares
    assert bound["reverse_kl"] == pytest.approx(np.sum(q * np.log(q * 8)), abs=0.01)


def test_bound_is_blind_to_wrong_weights_that_reweighting_can_fix():
    x, means, std = _mixture_draws("ring8", 20_000)
    heavy = np.concatenate([x, np.repeat(x[:20_000], 9, axis=0)])  # mode 0 ten times too often
    assert metrics.mode_coverage(heavy, means, std)["reverse_kl"] > 0.5
    bound = metrics.mode_coverage_bound(heavy, means, std, draws_per_mode=10_000)
    assert bound["modes"] == 8.0 and bound["reverse_kl"] < 0.01


def test_bound_refuses_mismatched_shapes_and_a_zero_std():
    means = np.zeros((3, 2))
    with pytest.raises(ValueError, match="generated"):
        metrics.mode_coverage_bound(np.zeros((5, 3)), means, 0.1)
    with pytest.raises(ValueError, match="std"):
        metrics.mode_coverage_bound(np.zeros((5, 2)), means, 0.0)


# ----------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------


def test_frechet_distance_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(0).normal(size=(1000, 16))
    assert metrics.frechet_distance_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 3.0, size=5), rng.uniform(0.1, 3.0, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2.0 * np.sqrt(var1 * var2))
    got = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T, b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_finite_on_singular_covariances():
    rng = np.random.default_rng(3)
    f1 = np.zeros((50, 10))
    f1[:, :2] = rng.normal(size=(50, 2))  # rank 2 of 10
    f2 = f1 + 1.0
    assert metrics.frechet_distance_from_features(f1, f2) == pytest.approx(10.0, rel=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="covariances"):
        metrics.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="widths"):
        metrics.frechet_distance_from_features(np.zeros((5, 2)), np.zeros((5, 3)))


# ----------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------


def _mmd2_unbiased_by_loops(x, y):
    """The unbiased MMD² with k(a, b) = (a·b/d + 1)³, written as the double sums."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_with_whole_sets_equals_the_double_sums():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(12, 3))
    # subset_size = N: every subset is the whole set, permuted; MMD² ignores the order.
    kid, std = metrics.kernel_inception_distance(x, y, num_subsets=3, subset_size=12)
    assert kid == pytest.approx(_mmd2_unbiased_by_loops(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-10)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_shifted_sets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    same, same_std = metrics.kernel_inception_distance(x, y, num_subsets=20, subset_size=500)
    shifted, _ = metrics.kernel_inception_distance(x, y + 0.5, num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std / math.sqrt(20) + 1e-3
    assert shifted > 0.05 and shifted > 20 * abs(same)


def test_kid_of_identical_sets_is_about_zero_and_seeded():
    f = np.random.default_rng(2).normal(size=(1000, 8))
    kid, _ = metrics.kernel_inception_distance(f, f, num_subsets=10, subset_size=1000)
    assert abs(kid) < 0.02  # the only bias: shared points, O(k(x, x) / m)
    a = metrics.kernel_inception_distance(f, f + 0.1, num_subsets=4, subset_size=100, seed=5)
    b = metrics.kernel_inception_distance(f, f + 0.1, num_subsets=4, subset_size=100, seed=5)
    assert a == b


# ----------------------------------------------------------------------------
# Classifier score
# ----------------------------------------------------------------------------


def test_classifier_score_of_confident_uniform_classes_is_the_number_of_classes():
    probs = np.tile(np.eye(10), (30, 1))
    assert metrics.classifier_score(probs) == pytest.approx((10.0, 0.0))
    mean, std = metrics.classifier_score(probs, splits=3)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-12)


def test_classifier_score_of_constant_predictions_is_one():
    probs = np.tile([0.1, 0.6, 0.3], (40, 1))
    assert metrics.classifier_score(probs)[0] == pytest.approx(1.0)
    assert metrics.classifier_score(np.tile(np.eye(3)[1], (40, 1)))[0] == pytest.approx(1.0)


def test_classifier_score_of_confident_skewed_classes_is_exp_entropy():
    probs = np.concatenate([np.tile(np.eye(2)[0], (30, 1)), np.tile(np.eye(2)[1], (10, 1))])
    p = np.array([0.75, 0.25])
    assert metrics.classifier_score(probs)[0] == pytest.approx(math.exp(-np.sum(p * np.log(p))))


# ----------------------------------------------------------------------------
# Parzen window
# ----------------------------------------------------------------------------


def _parzen_float64(samples, test, sigma):
    """goodfeli/adversarial parzen_ll.py, in float64 NumPy."""
    a = (test[:, None, :] - samples[None, :, :]) / sigma
    e = -0.5 * (a**2).sum(axis=2)
    m = e.max(axis=1, keepdims=True)
    lme = m[:, 0] + np.log(np.exp(e - m).mean(axis=1))
    return lme - samples.shape[1] * np.log(sigma * np.sqrt(2 * np.pi))


def test_parzen_of_one_sample_is_the_gaussian_density():
    rng = np.random.default_rng(0)
    d, sigma = 784, 0.2
    centre = rng.uniform(size=(1, d))
    test = centre + rng.normal(0.0, 0.05, size=(5, d))
    expected = -np.sum((test - centre) ** 2, axis=1) / (2 * sigma**2) - d * np.log(
        sigma * np.sqrt(2 * np.pi)
    )
    got = metrics.parzen_log_likelihood(centre, test, sigma)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_parzen_of_far_apart_samples_at_themselves_is_analytic():
    # Each test point is one of N samples, all others far away: log p = -log N - d log(σ√2π).
    d, num, sigma = 4, 6, 0.1
    samples = 100.0 * np.arange(num)[:, None] * np.ones((1, d))
    got = metrics.parzen_log_likelihood(samples, samples, sigma, chunk=4)
    expected = -math.log(num) - d * math.log(sigma * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("chunk", [7, 1000])
def test_parzen_matches_the_reference_formula_on_pixels(chunk):
    rng = np.random.default_rng(1)
    samples = rng.uniform(size=(23, 784)).astype(np.float32)
    test = rng.uniform(size=(17, 784)).astype(np.float32)
    for sigma in (0.1, 0.3, 1.0):
        expected = _parzen_float64(samples.astype(np.float64), test.astype(np.float64), sigma)
        got = metrics.parzen_log_likelihood(samples, test, sigma, chunk=chunk)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_parzen_select_sigma_maximises_the_validation_likelihood():
    rng = np.random.default_rng(2)
    samples, validation = rng.normal(0.5, 0.2, size=(2, 300, 20))
    sigma, means = metrics.parzen_select_sigma(samples, validation, chunk=64)
    expected = [_parzen_float64(samples, validation, s).mean() for s in metrics.PARZEN_SIGMAS]
    np.testing.assert_allclose(means, expected, rtol=1e-5)
    assert sigma == metrics.PARZEN_SIGMAS[int(np.argmax(expected))]
    assert len(metrics.PARZEN_SIGMAS) == 10
    assert metrics.PARZEN_SIGMAS[0] == pytest.approx(0.1)
    assert metrics.PARZEN_SIGMAS[-1] == pytest.approx(1.0)


def test_mean_and_standard_error():
    values = np.arange(10.0)
    mean, se = metrics.mean_and_standard_error(values)
    assert mean == 4.5 and se == pytest.approx(values.std() / math.sqrt(10))


# ----------------------------------------------------------------------------
# Stacked MNIST
# ----------------------------------------------------------------------------


def test_every_triple_once_gives_1000_modes_and_no_kl():
    triples = np.array([(a, b, c) for a in range(10) for b in range(10) for c in range(10)])
    assert metrics.stacked_mnist_modes(triples) == {"modes": 1000.0, "kl": 0.0}


def test_one_triple_gives_one_mode_and_kl_log_1000():
    result = metrics.stacked_mnist_modes(np.tile([3, 1, 4], (26, 1)))
    assert result["modes"] == 1.0 and result["kl"] == pytest.approx(math.log(1000))


def test_two_triples_in_ratio_3_to_1():
    labels = np.array([[0, 1, 2]] * 3 + [[9, 9, 9]])
    p = np.array([0.75, 0.25])
    expected = float(np.sum(p * np.log(p * 1000)))
    assert metrics.stacked_mnist_modes(labels) == {"modes": 2.0, "kl": pytest.approx(expected)}


def test_stacked_mnist_modes_rejects_bad_labels():
    with pytest.raises(ValueError):
        metrics.stacked_mnist_modes(np.array([[0, 1, 10]]))
    with pytest.raises(ValueError):
        metrics.stacked_mnist_modes(np.zeros((4, 3)))  # floats


# ----------------------------------------------------------------------------
# Evaluators
# ----------------------------------------------------------------------------


def test_mixture_evaluator_reports_mode_coverage():
    dataset = data.mixture("grid25")
    evaluator = evaluators.make_evaluator(
        dataset, output_range=(-math.inf, math.inf), num_samples=250
    )
    assert evaluator.num_samples == 250 and evaluator.floor["modes"] == 25
    # Real data: within sampling error of P(chi2_2 <= 9), which is the ceiling.
    assert abs(evaluator.floor["high_quality"] - metrics.HIGH_QUALITY_OF_REAL_DATA) < 0.03
    means = dataset.arrays["means"]
    scores = evaluator(lambda n: np.resize(means, (n, 2)))
    assert scores == {"modes": 25.0, "high_quality": 1.0, "reverse_kl": 0.0}


def test_image_evaluator_needs_real_data():
    dataset = data.Dataset(name="mnist", kind="images", shape=(28, 28, 1), arrays={})
    with pytest.raises(evaluators.EvaluationError, match="idx_dir"):
        evaluators.make_evaluator(dataset, output_range=(-1.0, 1.0), idx_dir="")


@pytest.fixture(scope="module")
def short_classifier():
    """A classifier trained for 150 steps: enough for the evaluators' plumbing."""
    shared = os.environ.get("JAXGAN_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
    idx_dir = os.path.join(shared, "mnist")
    if not os.path.exists(os.path.join(idx_dir, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"MNIST IDX files not found in {idx_dir}")
    images = data.load_idx(idx_dir).arrays["images"]
    labels = data.load_idx_labels(idx_dir, split="train")
    params, _ = classifier.train_classifier(images, labels, seed=0, steps=150)
    info = {"seed": 0, "recipe_hash": "test", "test_accuracy": None}
    return params, classifier.params_hash(params), info


def test_mnist_evaluator_on_real_images_is_near_its_floor(mnist_idx_dir, short_classifier):
    dataset = data.load_idx(mnist_idx_dir)
    evaluator = evaluators.make_evaluator(
        dataset,
        output_range=(-1.0, 1.0),
        idx_dir=mnist_idx_dir,
        num_samples=2000,
        kid_subsets=10,
        classifier=short_classifier,
    )
    floor = evaluator.floor
    assert {"fid", "kid", "classifier_score", "parzen_ll", "parzen_se", "parzen_sigma"} <= set(
        floor
    )
    assert floor["test_accuracy"] > 0.9
    assert evaluator.protocol["classifier"]["hash"] == short_classifier[1]
    assert evaluator.protocol["parzen"]["validation"] == "train[50000:51000]"
    assert evaluator.protocol["kid"]["num_subsets"] == 10
    # "Samples": real train images in the generator's range [-1, 1].
    real = dataset.arrays["images"][:2000].astype(np.float32) / 127.5 - 1.0
    metrics = evaluator(lambda n: real[:n])
    noise = evaluator(lambda n: np.random.default_rng(0).uniform(-1, 1, (n, 28, 28, 1)))
    assert metrics["fid"] < 0.2 * noise["fid"] and metrics["kid"] < 0.1 * noise["kid"]
    assert metrics["classifier_score"] > 2 * noise["classifier_score"]
    assert metrics["parzen_ll"] > noise["parzen_ll"] + 100
    assert floor["fid"] <= metrics["fid"]  # 10,000 real images beat 2,000
    # Real images lie on the real manifold, uniform noise off it. (Measured: real
    # train images 0.90 precision, 0.88 recall, 0.96 density; coverage 0.54 with 2,000
    # of them, 0.95 with the floor's 10,000.)
    assert metrics["precision"] > 0.8 and metrics["density"] > 0.8
    assert 0.4 < metrics["coverage"] < floor["coverage"]
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8 and floor["coverage"] > 0.9
    # Uniform noise: measured 0.09 precision, 0 recall, 0.05 density, 0.002 coverage.
    assert noise["precision"] < 0.2 and noise["recall"] < 0.01 and noise["coverage"] < 0.01
    assert set(metrics) == {
        "fid", "kid", "kid_std", "classifier_score", "classifier_score_std",
        "parzen_ll", "parzen_se", "parzen_sigma", "precision", "recall", "density", "coverage",
    }  # fmt: skip


def test_stacked_mnist_evaluator_counts_modes_of_real_images(mnist_idx_dir, short_classifier):
    dataset = data.Dataset(name="stacked_mnist", kind="images", shape=(28, 28, 3), arrays={})
    evaluator = evaluators.make_evaluator(
        dataset,
        output_range=(-1.0, 1.0),
        idx_dir=mnist_idx_dir,
        num_samples=3000,
        classifier=short_classifier,
    )
    assert evaluator.floor["modes"] > 900 and evaluator.floor["channel_accuracy"] > 0.9
    real = data.stacked_mnist(mnist_idx_dir, split="train", num_examples=3000, seed=1)
    samples = real.arrays["images"].astype(np.float32) / 127.5 - 1.0
    metrics = evaluator(lambda n: samples[:n])
    assert metrics["modes"] > 900 and metrics["kl"] < 0.5
    collapsed = evaluator(lambda n: np.repeat(samples[:1], n, axis=0))
    assert collapsed == {"modes": 1.0, "kl": pytest.approx(math.log(1000))}


# ----------------------------------------------------------------------------
# Stacked MNIST data
# ----------------------------------------------------------------------------


def test_stacked_mnist_is_deterministic_and_keeps_the_digits(mnist_idx_dir):
    a = data.stacked_mnist(mnist_idx_dir, num_examples=500, seed=3)
    b = data.load(
        types.SimpleNamespace(name="stacked_mnist", idx_dir=mnist_idx_dir, num_examples=500, seed=3)
    )
    assert a.fingerprint == b.fingerprint and a.shape == (28, 28, 3) and a.num_examples == 500
    assert data.stacked_mnist(mnist_idx_dir, num_examples=500, seed=4).fingerprint != a.fingerprint
    images, labels = a.arrays["images"], a.arrays["labels"]
    assert images.dtype == np.uint8 and labels.shape == (500, 3)
    mnist = data.load_idx(mnist_idx_dir).arrays["images"][..., 0]
    mnist_labels = data.load_idx_labels(mnist_idx_dir, split="train")
    for n in (0, 123, 499):
        for c in range(3):  # each channel is an MNIST image of its recorded digit
            matches = np.flatnonzero((mnist == images[n, ..., c]).all(axis=(1, 2)))
            assert matches.size and labels[n, c] in mnist_labels[matches]


def test_stacked_mnist_needs_the_idx_folder():
    with pytest.raises(data.DataError, match="idx_dir"):
        data.load(types.SimpleNamespace(name="stacked_mnist", idx_dir=""))


def test_stacked_mnist_preset_fits_dcgan28():
    from jaxgan import models
    from jaxgan.configs import stacked_mnist_dcgan

    config = stacked_mnist_dcgan.get_config()
    assert config.data.name == "stacked_mnist" and config.model.name in models.MODEL_NAMES
    built = models.build_models(config.model.name, data_shape=(28, 28, 3))
    assert built.data_shape == (28, 28, 3)


# ----------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------


def _run(args, timeout=300):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(proc):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("jaxgan.evaluate: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_refuses_a_folder_that_is_no_run(tmp_path):
    line = _one_error_line(_run(["-m", "jaxgan.evaluate", f"--workdir={tmp_path}"]))
    assert "not a jaxgan run folder" in line


def _main_error_line(args, capsys):
    assert evaluate.main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    errors = [x for x in lines if x.startswith("jaxgan.evaluate: error:")]
    assert len(errors) == 1, lines
    return errors[0]


def test_cli_says_when_there_is_no_real_data(tmp_path, capsys):
    from jaxgan.configs import mnist_dcgan

    config = mnist_dcgan.get_config()
    record = {
        "config": config.to_dict(),
        "dataset": {"name": "mnist", "kind": "images", "shape": [28, 28, 1], "fingerprint": "x"},
    }
    (tmp_path / "config.json").write_text(json.dumps(record))
    line = _main_error_line([f"--workdir={tmp_path}"], capsys)
    assert "needs the real data" in line and "--idx_dir" in line
    missing = tmp_path / "nowhere"
    line = _main_error_line([f"--workdir={tmp_path}", f"--idx_dir={missing}"], capsys)
    assert "No real data" in line and "nowhere" in line
    assert not (tmp_path / "eval.json").exists()


def test_cli_refuses_an_unreadable_config(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    assert "unreadable" in _main_error_line([f"--workdir={tmp_path}"], capsys)


@pytest.mark.slow
def test_cli_end_to_end_on_a_tiny_grid25_run(tmp_path):
    workdir = tmp_path / "run"
    train = _run(
        [
            os.path.join(ROOT, "train.py"),
            f"--workdir={workdir}",
            "--config.num_steps=20",
            "--config.log_every=10",
            "--config.eval_every=10",
            "--config.ckpt_every=10",
            "--config.ema_decay=0.99",
        ]
    )
    assert train.returncode == 0, train.stderr
    args = ["-m", "jaxgan.evaluate", f"--workdir={workdir}", "--num_samples=500", "--seed=3"]
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((workdir / "eval.json").read_text())
    assert set(record["metrics"]) == {"modes", "high_quality", "reverse_kl"}
    assert 0 <= record["metrics"]["modes"] <= 25
    protocol = record["protocol"]
    assert protocol["num_samples"] == 500 and protocol["sample_seed"] == 3
    assert protocol["checkpoint_step"] == record["step"] == 20
    assert protocol["dataset"] == "grid25" and protocol["generator"] == "EMA"
    assert protocol["jaxgan_version"] and protocol["dataset_fingerprint"]
    first = (workdir / "eval.json").read_bytes()
    again = _run([*args, "--step=10"])
    assert again.returncode == 0, again.stderr
    record10 = json.loads((workdir / "eval.json").read_text())
    assert record10["step"] == 10 and (workdir / "eval.json").read_bytes() != first
    # --raw: G's own parameters, in a file of its own; eval.json is left as it was.
    ema_record = (workdir / "eval.json").read_bytes()
    raw = _run([*args, "--raw"])
    assert raw.returncode == 0, raw.stderr
    raw_record = json.loads((workdir / "eval_raw.json").read_text())
    assert raw_record["protocol"]["generator"] == "raw" and raw_record["step"] == 20
    assert (workdir / "eval.json").read_bytes() == ema_record
    assert not [n for n in os.listdir(workdir) if n.endswith(".tmp")]


@pytest.mark.slow
def test_trainer_and_cli_score_the_same_samples_on_2d_data(tmp_path):
    """The trainer's final eval_* metrics and jaxgan.evaluate's, from the same checkpoint."""
    workdir = tmp_path / "run"
    train = _run(
        [
            os.path.join(ROOT, "train.py"),
            f"--workdir={workdir}",
            "--config.num_steps=30",
            "--config.log_every=30",
            "--config.eval_every=30",
            "--config.ckpt_every=30",
            "--config.num_eval_samples=700",
            "--config.ema_decay=0.9",  # the EMA generator, with its standing statistics
        ]
    )
    assert train.returncode == 0, train.stderr
    proc = _run(["-m", "jaxgan.evaluate", f"--workdir={workdir}"])
    assert proc.returncode == 0, proc.stderr
    record = json.loads((workdir / "eval.json").read_text())
    last = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()][-1]
    assert record["protocol"]["num_samples"] == 700 and record["step"] == last["step"] == 30
    assert record["metrics"] == {name: last[f"eval_{name}"] for name in record["metrics"]}
    assert 0 < last["eval_high_quality"] < 1  # a number that could differ, not 0 or 1


@pytest.mark.slow
def test_cli_end_to_end_on_a_tiny_mnist_run(
    tmp_path, mnist_idx_dir, monkeypatch, capsys, random_inception_weights, small_batches
):
    """Train with image metrics in process (a short classifier, 500 samples), then the CLI:
    the same classifier, the same samples, the same numbers; and the Inception metrics
    beside them (seeded random weights, 16 samples), each with its floor."""
    from jaxgan import trainer
    from jaxgan.configs import mnist_dcgan

    monkeypatch.setitem(classifier.RECIPE, "steps", 100)  # plumbing, not accuracy
    monkeypatch.setitem(evaluators.DEFAULT_NUM_SAMPLES, "images", 500)
    cache = tmp_path / "cache"
    monkeypatch.setenv("JAXGAN_CACHE", str(cache))
    config = mnist_dcgan.get_config()
    config.data.idx_dir = mnist_idx_dir
    config.num_steps = config.log_every = config.eval_every = config.ckpt_every = 2
    config.eval_parzen = False
    workdir = tmp_path / "run"
    assert trainer.train_and_evaluate(config, str(workdir), log=print) == 0
    weights_file = tmp_path / "weights.pth"
    load = lambda path: random_inception_weights if path == str(weights_file) else None
    monkeypatch.setattr(evaluate.inception_features, "load_weights", load)
    args = [
        f"--workdir={workdir}",
        "--num_samples=500",
        f"--cache_dir={cache / 'classifiers'}",
        "--no_parzen",
        f"--kid_subsets={trainer.TRAINING_KID_SUBSETS}",
        f"--inception_weights={weights_file}",
        "--inception_samples=16",
        "--inception_real_num=24",
    ]
    assert evaluate.main(args) == 0
    record = json.loads((workdir / "eval.json").read_text())
    names = {"fid", "kid", "kid_std", "classifier_score", "classifier_score_std", "precision",
             "recall", "density", "coverage"}  # fmt: skip
    inception = {f"inception_{n}" for n in ("fid", "kid", "kid_se", "is", "is_std", "precision",
                                            "recall", "density", "coverage")}  # fmt: skip
    assert set(record["metrics"]) == names | inception
    assert names | {"test_accuracy"} | inception == set(record["real_data_floor"])
    assert record["metrics"]["fid"] > record["real_data_floor"]["fid"]  # 2 steps of training
    assert record["metrics"]["inception_fid"] > record["real_data_floor"]["inception_fid"]
    last = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()][-1]
    assert {n: record["metrics"][n] for n in names} == {n: last[f"eval_{n}"] for n in names}
    protocol = record["protocol"]
    (cached,) = os.listdir(cache / "classifiers")
    assert cached.startswith("mnist-0-") and protocol["classifier"]["dataset"] == "mnist"
    assert len(protocol["classifier"]["hash"]) == 64 and protocol["num_samples"] == 500
    assert protocol["checkpoint_step"] == 2 and "parzen" not in protocol
    assert "Wrote" in capsys.readouterr().out
    protocol = protocol["inception"]
    assert "mnist train split, first 24 images" in protocol["real"]
    assert "16 images of mnist test" in protocol["floor"] and protocol["num_samples"] == 16
    assert protocol["weights_sha256"] == "0" * 64
    assert len(os.listdir(cache / "inception")) == 2  # the train and test splits' features
