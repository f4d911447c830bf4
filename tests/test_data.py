"""Tests for jaxgan.data: mixtures, IDX files, tfds (mocked and real), sampling."""

import functools
import gzip
import io
import json
import math
import os
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgan import data

# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    """Raw (uncompressed) IDX bytes of an unsigned-byte array."""
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_idx_dir(directory, num_train=6, num_test=4, rows=4, cols=5, seed=0):
    """Writes the four standard IDX .gz files; returns their (images, labels) by split."""
    rng = np.random.default_rng(seed)
    contents = {}
    for split, num in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, size=(num, rows, cols), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(num,), dtype=np.uint8)
        images_file, labels_file = data.IDX_FILES[split]
        for filename, array in ((images_file, images), (labels_file, labels)):
            with gzip.open(os.path.join(directory, filename), "wb") as f:
                f.write(_idx_bytes(array))
        contents[split] = (images, labels)
    return contents


def _sampler(ds, value_range=(-1.0, 1.0)):
    return jax.jit(
        functools.partial(data.sample_batch, dataset=ds, value_range=value_range),
        static_argnums=2,
    )


def _tiny_images_dataset(num=5):
    images = np.arange(num * 3 * 2 * 1, dtype=np.uint8).reshape(num, 3, 2, 1)
    images[0] = 0
    images[-1] = 255
    return data._images_dataset("tiny", images)


# ----------------------------------------------------------------------------
# Mixtures
# ----------------------------------------------------------------------------


def test_ring8_constants():
    ds = data.mixture("ring8")
    means = ds.arrays["means"]
    assert (ds.name, ds.kind, ds.shape, ds.std, ds.num_examples) == (
        "ring8",
        "mixture",
        (2,),
        0.01,
        None,
    )
    assert means.dtype == np.float32 and means.shape == (8, 2)
    angles = 2 * np.pi * np.arange(8) / 8
    np.testing.assert_allclose(means, np.stack([np.cos(angles), np.sin(angles)], -1), atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(means, axis=-1), 1.0, atol=1e-6)
    # Exactly 8 distinct modes, pairwise at least the chord of 2π/8 apart (not 7 as
    # with linspace(0, 2π, 8), whose first and last angle coincide).
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() == pytest.approx(2 * math.sin(math.pi / 8), abs=1e-6)
    assert len({tuple(np.round(m, 4)) for m in means}) == 8


def test_grid25_constants():
    ds = data.mixture("grid25")
    means = ds.arrays["means"]
    assert ds.std == 0.05 and means.shape == (25, 2) and means.dtype == np.float32
    expected = {(x, y) for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)}
    assert {tuple(float(v) for v in m) for m in means} == expected


def test_unknown_mixture():
    with pytest.raises(data.DataError, match="ring8"):
        data.mixture("ring7")


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_samples_near_modes_and_hit_all(name):
    ds = data.mixture(name)
    means = ds.arrays["means"]
    x = np.asarray(_sampler(ds)(ds.arrays, jax.random.key(0), 5000))
    assert x.shape == (5000, 2) and x.dtype == np.float32
    distances = np.linalg.norm(x[:, None] - means[None], axis=-1)
    nearest = distances.argmin(axis=1)
    # 2-D Gaussian radius: P(r > 5σ) = exp(-12.5) ≈ 4e-6.
    assert distances.min(axis=1).max() < 5 * ds.std
    counts = np.bincount(nearest, minlength=len(means))
    assert (counts > 0).all()
    expected = len(x) / len(means)
    assert np.abs(counts - expected).max() < 6 * math.sqrt(expected)
    residual = x - means[nearest]
    assert residual.std() == pytest.approx(ds.std, rel=0.05)
    assert np.abs(residual.mean(axis=0)).max() < 5 * ds.std / math.sqrt(len(x))


def test_mixture_sampling_is_pure_and_jit_equals_eager():
    ds = data.mixture("grid25")
    key = jax.random.key(7)
    eager = data.sample_batch(ds.arrays, key, 64, dataset=ds, value_range=(0.0, 1.0))
    jitted = _sampler(ds)(ds.arrays, key, 64)
    again = _sampler(ds)(jax.device_put(ds.arrays), key, 64)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(again))  # same key, same bits
    # Eager runs normal() and the scale-and-shift as separate programs; under jit XLA
    # fuses them and may round differently (an ulp), so compare to float32 precision.
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-7)
    other = _sampler(ds)(ds.arrays, jax.random.key(8), 64)
    assert not np.array_equal(np.asarray(jitted), np.asarray(other))
    # value_range is ignored for mixtures.
    ignored = _sampler(ds, (-5.0, 5.0))(ds.arrays, key, 64)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(ignored))


def test_mixture_fingerprints():
    ring, grid = data.mixture("ring8"), data.mixture("grid25")
    assert len(ring.fingerprint) == 64 and int(ring.fingerprint, 16) >= 0
    assert ring.fingerprint == data.mixture("ring8").fingerprint
    assert ring.fingerprint != grid.fingerprint
    means = ring.arrays["means"]
    assert data._mixture_fingerprint(means, 0.02) != ring.fingerprint
    nudged = means.copy()
    nudged.view(np.uint8)[0] ^= 1
    assert data._mixture_fingerprint(nudged, ring.std) != ring.fingerprint


# ----------------------------------------------------------------------------
# Image sampling
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_range", "low", "high"),
    [((-1.0, 1.0), -1.0, 1.0), ((0.0, 1.0), 0.0, 1.0), ((-math.inf, math.inf), 0.0, 1.0)],
)
def test_image_sampling_value_range(value_range, low, high):
    ds = _tiny_images_dataset()
    images = ds.arrays["images"]
    key = jax.random.key(3)
    for x in (
        _sampler(ds, value_range)(ds.arrays, key, 256),
        data.sample_batch(ds.arrays, key, 256, dataset=ds, value_range=value_range),
    ):
        assert x.shape == (256, 3, 2, 1) and x.dtype == jnp.float32
        x = np.asarray(x)
        assert x.min() == low and x.max() == high  # exact: 0 -> low, 255 -> high
        # Every sample is one of the stored images, scaled.
        scaled = images.astype(np.float64) / 255 * (high - low) + low
        diffs = np.abs(x[:, None] - scaled[None]).max(axis=(2, 3, 4))
        assert (diffs.min(axis=1) < 1e-6).all()


def test_image_sampling_is_pure_and_uniform():
    ds = _tiny_images_dataset(num=4)
    sample = _sampler(ds, (0.0, 1.0))
    key = jax.random.key(0)
    a, b = sample(ds.arrays, key, 4000), sample(jax.device_put(ds.arrays), key, 4000)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    eager = data.sample_batch(ds.arrays, key, 4000, dataset=ds, value_range=(0.0, 1.0))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(eager))
    assert not np.array_equal(np.asarray(a), np.asarray(sample(ds.arrays, jax.random.key(1), 4000)))
    # The first pixel differs between the 4 images, so it identifies the index.
    firsts = (ds.arrays["images"][:, 0, 0, 0].astype(np.float32) / 255)[None]
    index = np.abs(np.asarray(a)[:, 0, 0, 0][:, None] - firsts).argmin(axis=1)
    counts = np.bincount(index, minlength=4)
    assert np.abs(counts - 1000).max() < 6 * math.sqrt(1000)


def test_image_sampling_rejects_mismatched_arrays():
    ds = _tiny_images_dataset()
    bad = {"images": np.zeros((5, 2, 3, 1), np.uint8)}
    with pytest.raises(ValueError, match="expected uint8"):
        data.sample_batch(bad, jax.random.key(0), 2, dataset=ds, value_range=(0.0, 1.0))


# ----------------------------------------------------------------------------
# IDX files (synthetic)
# ----------------------------------------------------------------------------


def test_load_idx_synthetic(tmp_path):
    contents = _write_idx_dir(tmp_path)
    for split in ("train", "test"):
        ds = data.load_idx(str(tmp_path), name="fashion_mnist", split=split)
        images, labels = contents[split]
        assert (ds.name, ds.kind, ds.shape, ds.num_examples) == (
            "fashion_mnist",
            "images",
            (4, 5, 1),
            len(images),
        )
        assert ds.arrays["images"].dtype == np.uint8
        np.testing.assert_array_equal(ds.arrays["images"], images[..., None])
        got_labels = data.load_idx_labels(str(tmp_path), split=split)
        assert got_labels.dtype == np.uint8
        np.testing.assert_array_equal(got_labels, labels)


def test_idx_fingerprint_tracks_bytes_and_shape(tmp_path):
    _write_idx_dir(tmp_path)
    ds = data.load_idx(str(tmp_path))
    assert ds.fingerprint == data.load_idx(str(tmp_path)).fingerprint
    images = ds.arrays["images"].copy()
    images[0, 0, 0, 0] ^= 1
    assert data._images_fingerprint(images) != ds.fingerprint
    reshaped = ds.arrays["images"].reshape(-1, 5, 4, 1)
    assert data._images_fingerprint(reshaped) != ds.fingerprint
    assert data.load_idx(str(tmp_path), split="test").fingerprint != ds.fingerprint


def test_idx_missing_files(tmp_path):
    _write_idx_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    os.remove(tmp_path / "train-images-idx3-ubyte.gz")
    # Even the split whose files are there refuses: all four are checked first.
    for load in (
        lambda: data.load_idx(str(tmp_path), split="train"),
        lambda: data.load_idx(str(tmp_path), split="test"),
        lambda: data.load_idx_labels(str(tmp_path), split="train"),
    ):
        with pytest.raises(data.DataError) as info:
            load()
        message = str(info.value)
        assert "t10k-labels-idx1-ubyte.gz" in message
        assert "train-images-idx3-ubyte.gz" in message
        assert str(tmp_path) in message
        assert "train-labels-idx1-ubyte.gz" in message  # the list of expected files


def test_idx_missing_directory(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_idx(str(tmp_path / "nowhere"))


def test_idx_unknown_split(tmp_path):
    _write_idx_dir(tmp_path)
    with pytest.raises(data.DataError, match="validation"):
        data.load_idx(str(tmp_path), split="validation")


def test_idx_truncated_gzip(tmp_path):
    _write_idx_dir(tmp_path, num_train=50)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        data.load_idx(str(tmp_path))
    assert data.load_idx(str(tmp_path), split="test").num_examples == 4


def test_idx_corrupt_gzip(tmp_path):
    _write_idx_dir(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte\.gz.*corrupt"):
        data.load_idx(str(tmp_path), split="test")


def test_idx_short_payload(tmp_path):
    _write_idx_dir(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-1]))  # a valid gzip, one label short
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte\.gz.*truncated"):
        data.load_idx_labels(str(tmp_path), split="train")
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte\.gz.*truncated"):
        data.load_idx(str(tmp_path), split="train")
    path.write_bytes(gzip.compress(raw[:6]))  # not even a whole header
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte\.gz.*truncated"):
        data.load_idx_labels(str(tmp_path), split="train")


def test_idx_bad_magic(tmp_path):
    _write_idx_dir(tmp_path)
    images_path = tmp_path / "train-images-idx3-ubyte.gz"
    labels_path = tmp_path / "train-labels-idx1-ubyte.gz"
    # Swapped files: each has the other's magic number.
    images_raw, labels_raw = images_path.read_bytes(), labels_path.read_bytes()
    images_path.write_bytes(labels_raw)
    labels_path.write_bytes(images_raw)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz.*magic.*2049.*2051"):
        data.load_idx(str(tmp_path))
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte.gz.*magic.*2051.*2049"):
        data.load_idx_labels(str(tmp_path), split="train")


def test_idx_count_mismatch(tmp_path):
    _write_idx_dir(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(data.DataError, match=r"6 images.*5 labels"):
        data.load_idx(str(tmp_path))


# ----------------------------------------------------------------------------
# IDX files (real MNIST and Fashion-MNIST)
# ----------------------------------------------------------------------------


def test_real_mnist(mnist_idx_dir):
    train = data.load_idx(mnist_idx_dir, name="mnist", split="train")
    images = train.arrays["images"]
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert (train.shape, train.num_examples) == ((28, 28, 1), 60000)
    assert int(images.sum(dtype=np.int64)) == 1567298545  # from the data README
    assert train.fingerprint == data.load_idx(mnist_idx_dir, name="mnist").fingerprint

    test = data.load_idx(mnist_idx_dir, name="mnist", split="test")
    assert test.arrays["images"].shape == (10000, 28, 28, 1)
    assert int(test.arrays["images"].sum(dtype=np.int64)) == 264923200
    assert test.fingerprint != train.fingerprint

    train_labels = data.load_idx_labels(mnist_idx_dir, split="train")
    test_labels = data.load_idx_labels(mnist_idx_dir, split="test")
    assert train_labels.shape == (60000,) and train_labels.dtype == np.uint8
    assert list(train_labels[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(test_labels[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(np.bincount(test_labels)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_fashion_mnist(fashion_mnist_idx_dir):
    config = types.SimpleNamespace(name="fashion_mnist", idx_dir=fashion_mnist_idx_dir)
    train = data.load(config)
    assert train.name == "fashion_mnist"
    assert train.arrays["images"].shape == (60000, 28, 28, 1)
    assert int(train.arrays["images"].sum(dtype=np.int64)) == 3431114169
    labels = data.load_idx_labels(fashion_mnist_idx_dir, split="train")
    assert list(labels[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


# ----------------------------------------------------------------------------
# tfds
# ----------------------------------------------------------------------------


def test_tfds_mock_data_mnist():
    with tfds.testing.mock_data(num_examples=7):
        ds = data.load_tfds("mnist", split="train", data_dir="/nonexistent/tfds")
    images = ds.arrays["images"]
    assert (ds.name, ds.kind, ds.shape, ds.num_examples) == ("mnist", "images", (28, 28, 1), 7)
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.uint8
    assert len(ds.fingerprint) == 64
    x = _sampler(ds)(ds.arrays, jax.random.key(0), 16)
    assert x.shape == (16, 28, 28, 1) and x.dtype == jnp.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def test_tfds_mock_data_via_load_with_version():
    config = types.SimpleNamespace(name="cifar10:3.0.2", idx_dir=None, data_dir=None, split="test")
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load(config)
    assert ds.name == "cifar10:3.0.2"
    assert ds.arrays["images"].shape == (3, 32, 32, 3)


def test_tfds_unknown_name(tmp_path):
    with pytest.raises(data.DataError, match="not a registered tfds dataset") as info:
        data.load_tfds("no_such_dataset_xyz", data_dir=str(tmp_path))
    assert "ring8" in str(info.value) and "catalog" in str(info.value)
    assert isinstance(info.value.__cause__, tfds.core.DatasetNotFoundError)


def test_tfds_unprepared(tmp_path):
    with pytest.raises(data.DataError) as info:
        data.load_tfds("mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "not prepared" in message and "data_dir" in message and str(tmp_path) in message
    assert "pip install tensorflow" in message and "file_format='array_record'" in message
    assert "idx_dir" in message
    assert info.value.__cause__ is not None
    assert os.listdir(tmp_path) == []  # nothing downloaded or written


def test_tfds_no_image_feature(tmp_path):
    with pytest.raises(data.DataError, match="no 'image' feature"):
        data.load_tfds("imdb_reviews", data_dir=str(tmp_path))


def test_tfds_bad_version(tmp_path):
    with pytest.raises(data.DataError, match=re.escape("mnist:9.9.9")):
        data.load_tfds("mnist:9.9.9", data_dir=str(tmp_path))


class JaxganTestTinyImages(tfds.core.GeneratorBasedBuilder):
    """A tiny real tfds dataset, prepared without TensorFlow (images given as PNG)."""

    VERSION = tfds.core.Version("1.0.0")
    # A dotted module name (tests.test_data) makes tfds 4.9.10 look for the code path
    # with importlib_resources, which is not installed; a bare name skips that lookup.
    __module__ = "jaxgan_test_tiny_images"

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(4, 3, 1)),
                "label": tfds.features.ClassLabel(num_classes=2),
            }
        )
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(5), "test": self._generate_examples(2)}

    def _generate_examples(self, num):
        from PIL import Image

        for i in range(num):
            buffer = io.BytesIO()
            Image.fromarray(np.full((4, 3), 40 * i, np.uint8)).save(buffer, format="PNG")
            yield i, {"image": buffer.getvalue(), "label": i % 2}


def test_tfds_real_prepared_array_record(tmp_path):
    """No mock: tfds.data_source reads a prepared array_record dataset from data_dir."""
    builder = JaxganTestTinyImages(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    name = "jaxgan_test_tiny_images"
    ds = data.load_tfds(name, split="train", data_dir=str(tmp_path))
    images = ds.arrays["images"]
    assert images.shape == (5, 4, 3, 1) and images.dtype == np.uint8
    assert sorted(int(v) for v in images[:, 0, 0, 0]) == [0, 40, 80, 120, 160]
    assert (images == images[:, :1, :1]).all()  # each image is constant
    again = data.load_tfds(name, split="train", data_dir=str(tmp_path))
    assert again.fingerprint == ds.fingerprint
    assert data.load_tfds(name, split="test", data_dir=str(tmp_path)).num_examples == 2
    with pytest.raises(data.DataError, match=r"'validation'.*prepared splits: \['test', 'train'\]"):
        data.load_tfds(name, split="validation", data_dir=str(tmp_path))


def test_tfds_prepared_as_tfrecord(tmp_path):
    """The tfds default format, which tfds.data_source cannot read, gets its own message."""
    builder = JaxganTestTinyImages(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    # Writing real tfrecords needs TensorFlow; relabelling the metadata is what matters.
    info_path = os.path.join(builder.data_dir, "dataset_info.json")
    with open(info_path) as f:
        info = json.load(f)
    info["fileFormat"] = "tfrecord"
    with open(info_path, "w") as f:
        json.dump(info, f)
    with pytest.raises(data.DataError, match=r"as \['tfrecord'\].*array_record") as excinfo:
        data.load_tfds("jaxgan_test_tiny_images", data_dir=str(tmp_path))
    assert "pip install tensorflow" in str(excinfo.value)


# ----------------------------------------------------------------------------
# load() dispatch
# ----------------------------------------------------------------------------


def test_load_dispatch_mixtures():
    for name in data.MIXTURES:
        ds = data.load(types.SimpleNamespace(name=name, idx_dir=None, data_dir=None, split="train"))
        assert ds.name == name and ds.kind == "mixture"
        assert ds.fingerprint == data.mixture(name).fingerprint


def test_load_dispatch_idx(tmp_path):
    _write_idx_dir(tmp_path)
    ml_collections = pytest.importorskip("ml_collections")
    config = ml_collections.ConfigDict(
        {"name": "mnist:3.0.1", "idx_dir": str(tmp_path), "data_dir": None, "split": "test"}
    )
    ds = data.load(config)
    assert ds.name == "mnist" and ds.num_examples == 4
    assert ds.fingerprint == data.load_idx(str(tmp_path), split="test").fingerprint
    config.name = "ring8"
    with pytest.raises(data.DataError, match="idx_dir"):
        data.load(config)


def test_load_dispatch_tfds(tmp_path):
    config = types.SimpleNamespace(
        name="mnist", idx_dir=None, data_dir=str(tmp_path), split="train"
    )
    with pytest.raises(data.DataError, match="not prepared"):
        data.load(config)
    with tfds.testing.mock_data(num_examples=2):
        assert data.load(config).arrays["images"].shape == (2, 28, 28, 1)


def test_load_needs_a_name():
    with pytest.raises(data.DataError, match="name"):
        data.load(types.SimpleNamespace(name="", idx_dir=None))
