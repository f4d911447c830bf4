"""Tests for jaxgan.classifier: determinism, the cache, features, the real-data floor."""

import os

import jax
import numpy as np
import pytest

from jaxgan import classifier, data, evaluators


@pytest.fixture(scope="module")
def mnist_subset():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get("JAXGAN_SHARED_DATA", os.path.join(root, "..", "shared", "data"))
    idx_dir = os.path.join(shared, "mnist")
    if not os.path.exists(os.path.join(idx_dir, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"MNIST IDX files not found in {idx_dir} (set JAXGAN_SHARED_DATA)")
    images = data.load_idx(idx_dir).arrays["images"][:2000]
    labels = data.load_idx_labels(idx_dir, split="train")[:2000]
    return images, labels


def test_training_is_deterministic_from_the_seed(mnist_subset):
    images, labels = mnist_subset
    kwargs = {"steps": 40, "batch_size": 64, "max_shift": 1}
    a, metrics = classifier.train_classifier(images, labels, seed=1, **kwargs)
    b, _ = classifier.train_classifier(images, labels, seed=1, **kwargs)
    c, _ = classifier.train_classifier(images, labels, seed=2, **kwargs)
    assert classifier.params_hash(a) == classifier.params_hash(b)
    assert classifier.params_hash(a) != classifier.params_hash(c)
    assert np.isfinite(metrics["train_loss"]) and metrics["seconds"] > 0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_short_run_learns(mnist_subset):
    images, labels = mnist_subset
    params, _ = classifier.train_classifier(images[:1500], labels[:1500], seed=0, steps=120)
    assert classifier.accuracy(params, images[1500:], labels[1500:]) > 0.8


def test_features_do_not_depend_on_the_chunk_size(mnist_subset):
    images, labels = mnist_subset
    params, _ = classifier.train_classifier(images, labels, seed=0, steps=5, batch_size=32)
    x = images[:37].astype(np.float32) / 255.0
    f1, p1 = classifier.features_and_probs(params, x, batch_size=10)
    f2, p2 = classifier.features_and_probs(params, x.reshape(37, 784), batch_size=64)
    assert f1.shape == (37, classifier.NUM_FEATURES) and p1.shape == (37, 10)
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="784"):
        classifier.features_and_probs(params, np.zeros((2, 32, 32, 1)))


def test_bad_training_input_is_refused(mnist_subset):
    images, labels = mnist_subset
    with pytest.raises(ValueError, match="uint8"):
        classifier.train_classifier(images.astype(np.float32), labels, seed=0, steps=1)
    with pytest.raises(ValueError, match="one label per image"):
        classifier.train_classifier(images, labels[:5], seed=0, steps=1)


def test_get_classifier_trains_once_then_loads_from_the_cache(mnist_idx_dir, tmp_path):
    params, digest, info = classifier.get_classifier(
        "mnist", mnist_idx_dir, seed=3, cache_dir=str(tmp_path), steps=20
    )
    assert not info["cached"] and digest == classifier.params_hash(params)
    assert info["recipe"]["steps"] == 20 and info["recipe"]["max_shift"] == 1
    assert info["recipe"]["train_fingerprint"] == data.load_idx(mnist_idx_dir).fingerprint
    name = f"mnist-3-{info['recipe_hash']}.msgpack"
    assert os.listdir(tmp_path) == [name] and info["path"] == str(tmp_path / name)
    assert 0.0 <= info["test_accuracy"] <= 1.0

    loaded, loaded_digest, loaded_info = classifier.get_classifier(
        "mnist", mnist_idx_dir, seed=3, cache_dir=str(tmp_path), steps=20
    )
    assert loaded_info["cached"] and loaded_digest == digest
    assert classifier.params_hash(loaded) == digest
    assert loaded_info["test_accuracy"] == info["test_accuracy"]

    # Another recipe or seed is another file; a damaged file is replaced by a retrained one.
    other_recipe = {**info["recipe"], "steps": 21}
    assert classifier.cache_path(str(tmp_path), "mnist", 3, other_recipe) != info["path"]
    assert classifier.cache_path(str(tmp_path), "mnist", 4, info["recipe"]) != info["path"]
    with open(info["path"], "r+b") as f:
        f.seek(200)
        f.write(b"\x00" * 64)
    _, again_digest, again_info = classifier.get_classifier(
        "mnist", mnist_idx_dir, seed=3, cache_dir=str(tmp_path), steps=20
    )
    assert not again_info["cached"] and again_digest == digest  # deterministic retraining


def test_default_cache_dir_follows_jaxgan_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXGAN_CACHE", str(tmp_path))
    assert classifier.default_cache_dir() == os.path.join(str(tmp_path), "classifiers")
    monkeypatch.delenv("JAXGAN_CACHE")
    assert classifier.default_cache_dir().endswith(os.path.join(".cache", "jaxgan", "classifiers"))


def test_real_data_floor_is_small(mnist_subset):
    images, labels = mnist_subset
    params, _ = classifier.train_classifier(images, labels, seed=0, steps=100)
    floor = evaluators.real_data_floor(
        params, images[:1000], images[1000:1500], kid_subsets=10, kid_subset_size=200
    )
    assert set(floor) == {"fid", "kid", "kid_std", "classifier_score", "classifier_score_std",
                          "precision", "recall", "density", "coverage"}  # fmt: skip
    noise = np.random.default_rng(0).integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    noisy = evaluators.real_data_floor(
        params, noise, images[1000:1500], kid_subsets=10, kid_subset_size=200
    )
    assert floor["fid"] < 0.2 * noisy["fid"] and floor["kid"] < 0.1 * noisy["kid"]
    assert floor["classifier_score"] > 5.0


@pytest.mark.slow
def test_the_full_recipe_reaches_99_percent_on_mnist(mnist_idx_dir, tmp_path):
    """The real classifier: about 1-1.5 minutes on 2 CPU cores."""
    _, _, info = classifier.get_classifier("mnist", mnist_idx_dir, cache_dir=str(tmp_path))
    assert info["test_accuracy"] >= 0.990, info
