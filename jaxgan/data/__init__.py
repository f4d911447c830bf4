"""Datasets: the embedded 2-D mixtures, MNIST-family IDX files, tfds; on-device sampling.

Every loader returns a :class:`Dataset`: a small frozen record of what the data is
(name, kind, per-example shape, fingerprint) plus the host arrays the trainer puts
on device once. Batches are then drawn on device by :func:`sample_batch`, a pure
function of ``(arrays, key)``: no host→device copy per step, and the data order is
part of the reproducible function of ``(seed, step)``.

Sources:

* ``ring8`` and ``grid25``, PacGAN's 2-D Gaussian mixtures (Lin et al. 2018),
  embedded and infinite (:func:`mixture`).
* MNIST-family data from a folder of the four standard IDX ``.gz`` files, read with
  ``gzip`` and NumPy only (:func:`load_idx`, :func:`load_idx_labels`); ``python -m
  jaxgan.data download mnist|fashion_mnist --dir=DIR`` fetches them
  (:mod:`jaxgan.data.download`), checked against :data:`IDX_CHECKSUMS`.
* Stacked MNIST (Metz et al. 2017): three random MNIST digits as the RGB channels,
  built deterministically from MNIST's IDX files and a seed (:func:`stacked_mnist`).
* Any prepared tfds image dataset, read without TensorFlow through
  ``tfds.data_source`` (:func:`load_tfds`). *Preparing* a tfds dataset does need
  TensorFlow and a download; the error message says how.

Loading mistakes (missing, truncated or corrupt files; unknown or unprepared
datasets) raise :class:`DataError`, a ``ValueError`` whose message says what to do.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import operator
import os
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.errors import DataError
from jaxgan.files import file_sha256

__all__ = [
    "IDX_CHECKSUMS",
    "IDX_FILES",
    "IDX_NAMES",
    "IDX_TITLES",
    "IMAGE_LOADERS",
    "MIXTURES",
    "STACKED_MNIST",
    "STACKED_MNIST_SIZE",
    "DataError",
    "Dataset",
    "ImageSource",
    "batch_indices",
    "center_crop_resize",
    "check_fits",
    "choose_loader",
    "device_memory_bytes",
    "file_sha256",
    "images_in_range",
    "load",
    "load_idx",
    "load_idx_labels",
    "load_tfds",
    "memory_budget",
    "mixture",
    "pixels_to_floats",
    "sample_batch",
    "stacked_mnist",
]

MIXTURES = ("ring8", "grid25")
"""Names of the embedded 2-D Gaussian mixtures."""

IDX_NAMES = ("mnist", "fashion_mnist")
"""Dataset names :func:`load` accepts together with an ``idx_dir``."""

STACKED_MNIST = "stacked_mnist"
"""Stacked MNIST: built from MNIST's IDX files (:func:`stacked_mnist`)."""

STACKED_MNIST_SIZE = 128_000
"""Default number of Stacked MNIST images, as PacGAN's experiments (Lin et al. 2018)."""

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""The four standard IDX files, ``(images, labels)`` per split."""

IDX_CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422,
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881,
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877,
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542,
        ),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            26_421_880,
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            29_515,
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            4_422_102,
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            5_148,
        ),
    },
}
"""The pinned ``(sha256, bytes)`` of each ``.gz`` file of the known IDX datasets, as the
mirrors publish them (the values tensorflow-datasets pins; torchvision pins their md5)."""

IDX_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
"""How the known IDX datasets are called in messages."""

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.
_TFDS_CATALOG = "https://www.tensorflow.org/datasets/catalog/overview"


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: what it is, and the host arrays to place on device once.

    Equality and hashing are by identity (arrays make value equality ambiguous);
    compare ``fingerprint`` to ask whether two datasets hold the same data.

    Attributes:
      name: Dataset name, e.g. ``"ring8"``, ``"mnist"`` or a tfds name.
      kind: ``"mixture"`` (2-D toy, infinite) or ``"images"``.
      shape: Per-example shape: ``(2,)`` for mixtures, ``(H, W, C)`` for images.
      arrays: Host arrays: ``{"means": float32 (M, 2)}`` for mixtures,
        ``{"images": uint8 (N, H, W, C)}`` for images.
      std: Standard deviation of each mixture component (0 for images).
      fingerprint: sha256 hex digest of the canonical bytes of the data.
      num_examples: Number of examples, or ``None`` for infinite mixtures.
      num_classes: Number of classes of ``arrays["labels"]`` (uint8 or int32 (N,), one
        class per image: IDX label files, tfds' ``label`` feature), which class-conditional
        GANs train with; 0 when the data has no such labels. (Stacked MNIST's
        ``arrays["labels"]`` (N, 3), the digit of each channel, are for evaluation: 0.)
      source: For a *streamed* dataset (``load(..., stream=True)``, read through Grain by
        :mod:`jaxgan.data.streaming`): an :class:`ImageSource`, random access to the
        examples one by one, and ``arrays`` holds no ``"images"`` (the labels stay). None
        for a dataset held in memory.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    arrays: dict[str, np.ndarray]
    std: float = 0.0
    fingerprint: str = ""
    num_examples: int | None = None
    num_classes: int = 0
    source: Any = None


# ----------------------------------------------------------------------------
# Fingerprints
# ----------------------------------------------------------------------------


def _mixture_fingerprint(means: np.ndarray, std: float) -> str:
    digest = hashlib.sha256()
    digest.update(f"mixture:{means.shape}:std={float(std)!r}\n".encode())
    digest.update(np.ascontiguousarray(means, dtype="<f4").tobytes())
    return digest.hexdigest()


def _images_fingerprint(images: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(f"images:uint8:{tuple(images.shape)}\n".encode())
    digest.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return digest.hexdigest()


class _ImagesDigest:
    """:func:`_images_fingerprint` of ``num`` images of ``shape``, fed one image at a time
    (the same digest, without holding the images together)."""

    def __init__(self, num: int, shape: tuple[int, ...]):
        self._digest = hashlib.sha256()
        self._digest.update(f"images:uint8:{(int(num), *map(int, shape))}\n".encode())

    def update(self, image: np.ndarray) -> None:
        self._digest.update(memoryview(np.ascontiguousarray(image)).cast("B"))

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _resized_fingerprint(fingerprint: str, image_size: int) -> str:
    """The fingerprint of a dataset's images center-cropped and resized to ``image_size``,
    from the stored images' own: the same on the in-memory and the streamed path."""
    if not image_size:
        return fingerprint
    return hashlib.sha256(
        f"{fingerprint}:center_crop_resize:{int(image_size)}".encode()
    ).hexdigest()


def _images_dataset(name: str, images: np.ndarray) -> Dataset:
    return Dataset(
        name=name,
        kind="images",
        shape=tuple(int(d) for d in images.shape[1:]),
        arrays={"images": images},
        fingerprint=_images_fingerprint(images),
        num_examples=int(images.shape[0]),
    )


# ----------------------------------------------------------------------------
# Image size: center crop and resize; random access for the streaming loader
# ----------------------------------------------------------------------------


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 image ``(H, W, C)`` as ``(size, size, C)``: its centered square of side
    ``min(H, W)`` (rows from ``(H - side) // 2``, columns from ``(W - side) // 2``), resized
    to ``size`` with Pillow's bilinear filter (antialiased when shrinking; DCGAN's celeb_a
    at 64×64 was cropped and resized so), each channel alike. A square of side ``size`` is
    only cropped: its pixels are kept exactly.

    Example:
      >>> image = np.arange(24, dtype=np.uint8).reshape(4, 6, 1)
      >>> center_crop_resize(image, 4)[..., 0].tolist()[0]
      [1, 2, 3, 4]
    """
    from PIL import Image  # Deferred: only resized datasets need Pillow (matplotlib's).

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise DataError(f"center_crop_resize needs a uint8 (H, W, C) image, got {image.dtype} "
                        f"{image.shape}.")  # fmt: skip
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(square[..., c]), mode="L").resize(
            (size, size), Image.Resampling.BILINEAR))
        for c in range(square.shape[-1])
    ]  # fmt: skip
    return np.stack(channels, axis=-1)


def _image_shape(shape: tuple[int, ...], image_size: int) -> tuple[int, ...]:
    """The per-example shape of images of ``shape`` after :func:`center_crop_resize`."""
    return (image_size, image_size, shape[-1]) if image_size else tuple(shape)


class ImageSource:
    """Random access to an image dataset's examples: ``source[i] -> (image, label)``, the
    image uint8 of the dataset's shape (center-cropped and resized to ``image_size`` when
    that is set, :func:`center_crop_resize`), the label an int (0 for data without labels).

    What the streaming loader reads through Grain (:mod:`jaxgan.data.streaming`); any
    object with ``__len__`` and ``__getitem__`` is a ``grain.MapDataset`` source.
    """

    def __init__(self, read, num: int, image_size: int = 0):
        self._read, self._num, self.image_size = read, int(num), int(image_size)

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray | None, image_size: int = 0):
        """The source of host arrays: ``images`` uint8 (N, H, W, C), ``labels`` (N,) or None."""
        read = lambda i: (images[i], int(labels[i]) if labels is not None else 0)
        return cls(read, len(images), image_size)

    def __len__(self) -> int:
        return self._num

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        index = operator.index(index)
        if not 0 <= index < self._num:
            raise IndexError(f"example {index} of {self._num}")
        image, label = self._read(index)
        if self.image_size:
            image = center_crop_resize(image, self.image_size)
        return image, label


def _finish(dataset: Dataset, image_size: int, stream: bool) -> Dataset:
    """An in-memory image dataset (IDX files, Stacked MNIST) resized to ``image_size``, and
    for ``stream`` made a streamed one (its host arrays read through an ImageSource)."""
    if dataset.kind != "images" or not (image_size or stream):
        return dataset
    images = dataset.arrays["images"]
    labels = dataset.arrays["labels"] if dataset.num_classes else None
    fingerprint = _resized_fingerprint(dataset.fingerprint, image_size)
    shape = _image_shape(dataset.shape, image_size)
    if stream:
        source = ImageSource.from_arrays(images, labels, image_size)
        rest = {k: v for k, v in dataset.arrays.items() if k != "images"}  # labels stay
        return dataclasses.replace(
            dataset, arrays=rest, source=source, shape=shape, fingerprint=fingerprint
        )
    resized = np.stack([center_crop_resize(image, image_size) for image in images])
    return dataclasses.replace(
        dataset, arrays={**dataset.arrays, "images": resized}, shape=shape, fingerprint=fingerprint
    )


# ----------------------------------------------------------------------------
# Embedded 2-D mixtures
# ----------------------------------------------------------------------------


def mixture(name: str) -> Dataset:
    """Returns one of PacGAN's embedded 2-D Gaussian mixtures.

    * ``ring8``: 8 components on the unit circle at angles ``2πi/8``, i = 0..7,
      standard deviation 0.01.
    * ``grid25``: 25 components at ``{-4, -2, 0, 2, 4}²``, standard deviation 0.05.

    (Note ``linspace(0, 2π, 8)``, used by some reimplementations, repeats the
    first angle at 2π and so has only 7 distinct modes.)

    Args:
      name: ``"ring8"`` or ``"grid25"``.

    Returns:
      A ``Dataset`` of kind ``"mixture"`` with ``arrays["means"]`` float32 (M, 2),
      ``std`` set and ``num_examples`` None (the data are infinite).

    Raises:
      DataError: For any other name.

    Example:
      >>> ds = mixture("ring8")
      >>> ds.arrays["means"].shape, ds.std
      ((8, 2), 0.01)

    References:
      Lin et al., PacGAN: The power of two samples in generative adversarial
      networks, 2018 (arXiv 1712.04086).
    """
    if name == "ring8":
        angles = 2.0 * np.pi * np.arange(8) / 8.0
        means = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        std = 0.01
    elif name == "grid25":
        coords = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
        means = np.array([(x, y) for x in coords for y in coords])
        std = 0.05
    else:
        raise DataError(f"Unknown mixture {name!r}: the embedded mixtures are {MIXTURES}.")
    means = means.astype(np.float32)
    return Dataset(
        name=name,
        kind="mixture",
        shape=(2,),
        arrays={"means": means},
        std=std,
        fingerprint=_mixture_fingerprint(means, std),
        num_examples=None,
    )


# ----------------------------------------------------------------------------
# MNIST-family IDX files
# ----------------------------------------------------------------------------


def _idx_paths(directory: str, split: str) -> tuple[str, str]:
    """Checks the folder holds all four IDX files; returns (images, labels) of split."""
    if split not in IDX_FILES:
        raise DataError(
            f"Unknown IDX split {split!r}: use 'train' (train-*.gz) or 'test' (t10k-*.gz)."
        )
    expected = [f for pair in IDX_FILES.values() for f in pair]
    if not os.path.isdir(directory):
        raise DataError(
            f"IDX folder {directory!r} does not exist or is not a folder. It should hold "
            f"the four standard MNIST-format files: {', '.join(expected)}."
        )
    missing = [f for f in expected if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise DataError(
            f"IDX folder {directory!r} is missing {', '.join(missing)}. It should hold "
            f"the four standard gzip-compressed MNIST-format files: {', '.join(expected)} "
            "(as distributed, e.g. by yann.lecun.com or the Fashion-MNIST repository)."
        )
    images, labels = IDX_FILES[split]
    return os.path.join(directory, images), os.path.join(directory, labels)


def _check_not_another_dataset(directory: str, name: str, paths: tuple[str, ...]) -> None:
    """Refuses the files of another known dataset loaded as ``name`` (e.g. MNIST's files
    as ``fashion_mnist``, which would train without complaint). Only a file of the size of
    another dataset's file is hashed: the right files and unknown ones cost a ``stat``."""
    if name not in IDX_CHECKSUMS:
        return  # a name of the caller's own: nothing known to compare with
    others = {
        (size, sha): other
        for other, files in IDX_CHECKSUMS.items()
        if other != name
        for sha, size in files.values()
    }
    sizes = {size for size, _ in others}
    for path in paths:
        size = os.path.getsize(path)
        if size not in sizes:
            continue
        other = others.get((size, file_sha256(path)))
        if other is not None:
            raise DataError(
                f"{directory} holds {IDX_TITLES[other]}'s files, not {name}'s "
                f"({os.path.basename(path)} is {IDX_TITLES[other]}'s, by its sha256): point "
                f"config.data.idx_dir at a {IDX_TITLES.get(name, name)} folder (python -m "
                f"jaxgan.data download {name} --dir=DIR)."
            )


def _read_idx(path: str, magic: int) -> np.ndarray:
    """Reads one gzip-compressed unsigned-byte IDX file, checking it is complete."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError.
        raise DataError(
            f"IDX file {path!r} is truncated or corrupt: gzip could not decompress it "
            f"({e}). Download it again and check its sha256."
        ) from e
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(
            f"IDX file {path!r} has magic number {found}, expected {magic} "
            f"(0x{magic:08x}): it is not an unsigned-byte {ndim}-D IDX file, or is corrupt."
        )
    if len(raw) < header_len:
        raise DataError(f"IDX file {path!r} is truncated: its header is incomplete.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    payload = len(raw) - header_len
    if payload < expected:
        raise DataError(
            f"IDX file {path!r} is truncated: its header says {dims} = {expected} bytes "
            f"of data but it holds {payload}. Download it again and check its sha256."
        )
    if payload > expected:
        raise DataError(
            f"IDX file {path!r} is corrupt: its header says {dims} = {expected} bytes "
            f"of data but it holds {payload}."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def load_idx(directory: str, *, name: str = "mnist", split: str = "train") -> Dataset:
    """Loads MNIST-format images from a folder of the four standard IDX ``.gz`` files.

    Needs only ``gzip`` and NumPy. All four files (``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz``) must be present; the images of ``split`` are
    read and checked to be complete and to match the number of labels.

    Args:
      directory: Folder holding the four files.
      name: Name recorded in the result, e.g. ``"mnist"`` or ``"fashion_mnist"``.
      split: ``"train"`` (the ``train-*`` files) or ``"test"`` (``t10k-*``).

    Returns:
      A ``Dataset`` of kind ``"images"`` with ``arrays["images"]`` uint8
      (N, H, W, 1), read-only; (60000, 28, 28, 1) for the MNIST train split; and
      ``arrays["labels"]`` uint8 (N,), ``num_classes`` 1 + the largest label (10).

    Raises:
      DataError: A file is missing, truncated or corrupt, or the split is unknown; or
        ``name`` is a known dataset (:data:`IDX_CHECKSUMS`) and the files of ``split`` are
        those of another one (MNIST's files loaded as ``fashion_mnist``). Files of no
        known checksum, such as synthetic ones, load as any others.
    """
    images_path, labels_path = _idx_paths(directory, split)
    _check_not_another_dataset(directory, name, (images_path, labels_path))
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"IDX files do not match: {images_path!r} holds {images.shape[0]} images but "
            f"{labels_path!r} holds {labels.shape[0]} labels."
        )
    return _with_labels(_images_dataset(name, images[..., None]), labels)


def _with_labels(dataset: Dataset, labels: np.ndarray, num_classes: int | None = None) -> Dataset:
    """``dataset`` with one class label per image (``arrays["labels"]``, ``num_classes``)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return dataset
    classes = int(num_classes or int(labels.max()) + 1)
    dtype = np.uint8 if classes <= 256 else np.int32
    return dataclasses.replace(
        dataset,
        arrays={**dataset.arrays, "labels": labels.astype(dtype)},
        num_classes=classes,
    )


def load_idx_labels(directory: str, *, split: str) -> np.ndarray:
    """Loads the labels of one split from a folder of the four standard IDX files.

    Args:
      directory: Folder holding the four files (see :func:`load_idx`).
      split: ``"train"`` or ``"test"``.

    Returns:
      uint8 array (N,) of class labels, in the order of :func:`load_idx`'s images.

    Raises:
      DataError: A file is missing, truncated or corrupt, or the split is unknown.
    """
    _, labels_path = _idx_paths(directory, split)
    return _read_idx(labels_path, _IDX_LABELS_MAGIC)


def stacked_mnist(
    idx_dir: str,
    *,
    split: str = "train",
    num_examples: int = STACKED_MNIST_SIZE,
    seed: int = 0,
    check_memory: bool = True,
) -> Dataset:
    """Builds Stacked MNIST: three independent random MNIST digits as the RGB channels.

    Example ``n`` stacks the MNIST images ``index[n, 0]``, ``index[n, 1]`` and
    ``index[n, 2]`` of ``split`` as its red, green and blue channels, with ``index =
    np.random.default_rng(seed).integers(0, N, (num_examples, 3))``: each channel an
    independent uniform draw (with replacement), so the 1,000 digit triples are
    equally likely. The images stay 28x28, the size of the PacGAN and VEEGAN
    experiments (Lin et al. 2018; Srivastava et al. 2017), and each channel is then
    an MNIST image as the MNIST classifier saw it in training; ``dcgan28`` generates
    this shape with ``nc = 3``.

    Args:
      idx_dir: folder of MNIST's four IDX ``.gz`` files (see :func:`load_idx`).
      split: the MNIST split the digits come from: ``"train"`` or ``"test"``.
      num_examples: number of stacked images (PacGAN: 128,000).
      seed: seed of the digit draws.
      check_memory: refuse (DataError) images that would not fit on the device
        (:func:`check_fits`); :func:`load` checks them itself.

    Returns:
      A ``Dataset`` named ``"stacked_mnist"`` of kind ``"images"``, shape
      ``(28, 28, 3)``, with ``arrays["images"]`` uint8 (num_examples, 28, 28, 3) and
      ``arrays["labels"]`` uint8 (num_examples, 3), the digit of each channel (kept
      for evaluation; the trainer draws only images).

    Raises:
      DataError: the IDX files are missing or corrupt, or ``num_examples < 1``.
    """
    num_examples = operator.index(num_examples)
    if num_examples < 1:
        raise DataError(f"stacked_mnist needs num_examples >= 1, got {num_examples}.")
    if check_memory:
        check_fits(
            STACKED_MNIST, num_examples, (28, 28, 3), hint="fewer --config.data.num_examples"
        )
    digits = load_idx(idx_dir, name="mnist", split=split).arrays["images"][..., 0]
    digit_labels = load_idx_labels(idx_dir, split=split)
    index = np.random.default_rng(int(seed)).integers(0, digits.shape[0], (num_examples, 3))
    images = np.empty((num_examples, *digits.shape[1:], 3), np.uint8)
    for channel in range(3):
        images[..., channel] = digits[index[:, channel]]
    dataset = _images_dataset(STACKED_MNIST, images)
    return dataclasses.replace(
        dataset, arrays={"images": images, "labels": digit_labels[index].astype(np.uint8)}
    )


# ----------------------------------------------------------------------------
# tfds
# ----------------------------------------------------------------------------


def _prepare_hint(name: str, data_dir: Any) -> str:
    return (
        "Reading a prepared dataset needs no TensorFlow, but preparing one needs "
        "TensorFlow and a download: `pip install tensorflow`, then `python -c "
        '"import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}', data_dir='{data_dir}', file_format='array_record')"
        '.download_and_prepare()"` (array_record: the random-access format '
        "tfds.data_source reads). Or pass --config.data.data_dir pointing at a folder "
        "that holds the prepared dataset, or for MNIST and Fashion-MNIST use "
        "--config.data.idx_dir with a folder of the four IDX .gz files."
    )


def _open_tfds(name: str, split: str, data_dir: str | None):
    """``(source, features)``: the random-access source of a prepared tfds split, and its
    feature names; DataError (saying how to prepare it) when it cannot be read."""
    import tensorflow_datasets as tfds  # Deferred: a heavy import only tfds users need.

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as e:
        raise DataError(
            f"Unknown dataset {name!r}: it is not a registered tfds dataset. The "
            f"embedded datasets are {', '.join(MIXTURES)}; MNIST and Fashion-MNIST "
            "also load offline from IDX files (--config.data.idx_dir); any image "
            f"dataset of the tfds catalog works once prepared: {_TFDS_CATALOG}"
        ) from e
    except Exception as e:
        raise DataError(f"Could not open tfds dataset {name!r}: {e}") from e

    features = builder.info.features
    feature_names = list(features.keys()) if hasattr(features, "keys") else []
    if "image" not in feature_names:
        raise DataError(
            f"tfds dataset {name!r} has no 'image' feature (its features: "
            f"{feature_names}); jaxgan trains on image datasets."
        )

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        root = builder.data_dir_root
        if not builder.is_prepared():
            raise NotPreparedError(
                f"tfds dataset {name!r} is not prepared in data_dir {str(root)!r}. "
                + _prepare_hint(name, root)
            ) from e
        formats = {f.value for f in builder.info.available_file_formats()}
        readable = {f.value for f in tfds.core.FileFormat.with_random_access()}
        if formats and not formats & readable:
            raise DataError(
                f"tfds dataset {name!r} is prepared in data_dir {str(root)!r} as "
                f"{sorted(formats)}, which tfds.data_source cannot read: it needs a "
                f"random-access format, one of {sorted(readable)}. Prepare it again with "
                "file_format='array_record' (into another data_dir, or after deleting "
                f"{builder.data_dir!r}). " + _prepare_hint(name, root)
            ) from e
        raise DataError(
            f"Could not read split {split!r} of tfds dataset {name!r} from data_dir "
            f"{str(root)!r} (prepared splits: {sorted(builder.info.splits.keys())}): {e}"
        ) from e
    if len(source) == 0:
        raise DataError(f"Split {split!r} of tfds dataset {name!r} is empty.")
    return source, features


def _tfds_shape(source) -> tuple[int, ...]:
    first = np.asarray(source[0]["image"])
    return first.shape if first.ndim == 3 else (*first.shape, 1)


def load_tfds(
    name: str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    image_size: int = 0,
    stream: bool = False,
    budget: int | None = None,
) -> Dataset:
    """Loads a prepared tfds image dataset into one uint8 array, without TensorFlow.

    Reads through ``tfds.data_source(name, split=split, data_dir=data_dir,
    download=False)``, so the dataset must already be prepared in ``data_dir`` in a
    random-access format (``array_record``); nothing is downloaded. Works inside
    ``tfds.testing.mock_data``, which mocks ``tfds.data_source``.

    Args:
      name: A registered tfds name, optionally with config and version:
        ``"mnist"``, ``"mnist:3.0.1"``, ``"cifar10"``.
      split: A tfds split, e.g. ``"train"`` or ``"train[:90%]"``.
      data_dir: The tfds data folder; None uses tfds' default (``TFDS_DATA_DIR``
        or ``~/tensorflow_datasets``).
      image_size: 0 keeps the images as stored; S center-crops each to a square and
        resizes it to S×S (:func:`center_crop_resize`).
      stream: hold no images: the result's ``source`` reads them one by one (the Grain
        loader's, :mod:`jaxgan.data.streaming`). Every image is still read once, for the
        fingerprint (the same as the in-memory dataset's) and the labels.
      budget: the most bytes the images may take in memory (None:
        :data:`DATA_MEMORY_FRACTION` of the device's); not checked with ``stream``.

    Returns:
      A ``Dataset`` of kind ``"images"`` with the ``"image"`` feature of every
      example of the split, in tfds order, as ``arrays["images"]`` uint8
      (N, H, W, C) (none with ``stream``, which sets ``source``; the labels are kept).

    Raises:
      DataError: The name is not a tfds dataset; the dataset is not prepared in
        ``data_dir`` (or not in a random-access format); it has no ``"image"``
        feature; its images are not uint8 or differ in shape.
    """
    source, features = _open_tfds(name, split, data_dir)
    num = len(source)
    stored_shape = _tfds_shape(source)
    shape = _image_shape(stored_shape, image_size)
    if not stream:
        check_fits(
            f"tfds dataset {name!r}, split {split!r},", num, shape, budget=budget,
            hint=f"a part of it (--config.data.split='{split.split('[')[0]}[:10%]')",
        )  # fmt: skip
    label_feature = features["label"] if "label" in features.keys() else None
    num_classes = int(getattr(label_feature, "num_classes", 0) or 0)

    def read(i: int) -> tuple[np.ndarray, int]:
        example = source[i]
        image = np.asarray(example["image"])
        if image.ndim == 2:
            image = image[..., None]
        if i == 0 and (image.dtype != np.uint8 or image.ndim != 3):
            raise DataError(
                f"tfds dataset {name!r}: 'image' is {image.dtype} of shape "
                f"{image.shape}; jaxgan needs uint8 images of shape (H, W, C)."
            )
        if image.shape != stored_shape or image.dtype != np.uint8:
            raise DataError(
                f"tfds dataset {name!r}: example {i} has an image of {image.dtype} "
                f"{image.shape}, unlike the first ({stored_shape} uint8); jaxgan "
                "needs images of one fixed shape."
            )
        return image, int(np.asarray(example["label"])) if num_classes else 0

    labels = np.zeros(num if num_classes else 0, np.int64)
    images = None if stream else np.empty((num, *shape), dtype=np.uint8)
    digest = _ImagesDigest(num, stored_shape)
    for i in range(num):
        image, label = read(i)
        digest.update(image)
        if num_classes:
            labels[i] = label
        if images is not None:
            images[i] = center_crop_resize(image, image_size) if image_size else image
    fingerprint = _resized_fingerprint(digest.hexdigest(), image_size)
    dataset = Dataset(
        name=name, kind="images", shape=shape, arrays={} if stream else {"images": images},
        fingerprint=fingerprint, num_examples=num,
        source=ImageSource(read, num, image_size) if stream else None,
    )  # fmt: skip
    return _with_labels(dataset, labels, num_classes) if num_classes else dataset


class NotPreparedError(DataError):
    """A tfds dataset that is not prepared in the data folder."""


# ----------------------------------------------------------------------------
# Memory, and the choice of loader
# ----------------------------------------------------------------------------

DATA_MEMORY_FRACTION = 0.5
"""The largest share of the device's memory a dataset may take (the rest is the networks')."""

IMAGE_LOADERS = ("auto", "device", "grain")
"""``config.data.loader``: ``device`` holds the dataset on every device and draws batches
there; ``grain`` streams them from the host (:mod:`jaxgan.data.streaming`); ``auto`` takes
``device`` when the dataset fits (:func:`choose_loader`)."""


def device_memory_bytes() -> int:
    """Memory of the device a dataset is placed on: an accelerator's own (``bytes_limit``),
    or on CPU the host's physical memory."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # backends without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def memory_budget(data_config: Any = None) -> tuple[int, str]:
    """``(bytes, in words)``: the most a dataset may take on the device:
    ``config.data.memory_budget_bytes`` when set (> 0), else :data:`DATA_MEMORY_FRACTION`
    of the device's memory."""
    budget = int(getattr(data_config, "memory_budget_bytes", 0) or 0)
    if budget:
        return budget, f"config.data.memory_budget_bytes = {_size(budget)}"
    have = device_memory_bytes()
    return int(DATA_MEMORY_FRACTION * have), (
        f"{DATA_MEMORY_FRACTION:.0%} of {_size(have)} of {jax.devices()[0].device_kind} memory"
    )


def check_fits(
    what: str, num: int, shape: tuple[int, ...], *, hint: str, budget: int | None = None
) -> None:
    """Refuses, before it is loaded, a dataset of ``num`` uint8 examples of ``shape`` that
    would take more than ``budget`` bytes (None: :data:`DATA_MEMORY_FRACTION` of the
    device's memory; the device loader places a dataset on the device whole).

    Raises:
      DataError: saying how large the data is, how much memory there is, what to do.
    """
    need = int(num) * math.prod(int(d) for d in shape)
    if budget is None:
        budget, words = memory_budget()
    else:
        words = f"the budget of {_size(budget)}"
    if need > budget:
        dims = "×".join(str(d) for d in shape)
        raise DataError(
            f"{what} is {num:,} images of {dims} = {_size(need)} as uint8, more than "
            f"{words} that the device loader holds a dataset in whole. Stream it instead "
            f"(--config.data.loader=grain, or auto), or train on {hint}, or on smaller images "
            "(--config.data.image_size)."
        )


def _idx_count_and_shape(directory: str, split: str) -> tuple[int, tuple[int, ...]]:
    """The number and shape of the images of an IDX split, from its header alone."""
    images_path, _ = _idx_paths(directory, split)
    try:
        with gzip.open(images_path, "rb") as f:
            header = f.read(16)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"IDX file {images_path!r} is truncated or corrupt ({e}).") from e
    if len(header) < 16 or int.from_bytes(header[:4], "big") != _IDX_IMAGES_MAGIC:
        _read_idx(images_path, _IDX_IMAGES_MAGIC)  # raises, saying what is wrong
    num, height, width = (int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    return num, (height, width, 1)


def choose_loader(data_config: Any) -> tuple[str, str]:
    """``(loader, why)``: ``"device"`` or ``"grain"`` for the data a config asks for, and
    the reason in words, without loading the data.

    ``config.data.loader`` ``"device"`` or ``"grain"`` is taken as it is; ``"auto"`` (the
    default) takes ``"device"`` when the images (after ``config.data.image_size``) fit in
    :func:`memory_budget`, else ``"grain"``. The embedded 2-D mixtures are always drawn on
    the device.

    Raises:
      DataError: the data cannot be opened, or ``"grain"`` was asked for a 2-D mixture.
    """
    loader = getattr(data_config, "loader", None) or "auto"
    if loader not in IMAGE_LOADERS:
        raise DataError(f"Unknown config.data.loader {loader!r}; choose one of {IMAGE_LOADERS}.")
    name = getattr(data_config, "name", None)
    if not name:
        raise DataError("The data config has no dataset name (config.data.name).")
    idx_dir = getattr(data_config, "idx_dir", None)
    split = getattr(data_config, "split", None) or "train"
    image_size = int(getattr(data_config, "image_size", 0) or 0)
    if name in MIXTURES and not idx_dir:
        if loader == "grain":
            raise DataError(
                f"{name} is an embedded 2-D mixture, drawn on the device: the grain loader "
                "reads image datasets. Use --config.data.loader=auto."
            )
        return "device", f"{name} is an embedded 2-D mixture"
    if name == STACKED_MNIST:
        num, shape = getattr(data_config, "num_examples", None) or STACKED_MNIST_SIZE, (28, 28, 3)
    elif idx_dir:
        num, shape = _idx_count_and_shape(idx_dir, split)
    else:
        data_dir = getattr(data_config, "data_dir", None) or None
        try:
            source, _ = _open_tfds(name, split, data_dir)
        except NotPreparedError as e:
            _raise_not_prepared(name, data_dir, e)
        num, shape = len(source), _tfds_shape(source)
    shape = _image_shape(shape, image_size)
    need = int(num) * math.prod(shape)
    budget, words = memory_budget(data_config)
    size = f"{name} {_size(need)}: {int(num):,} images of {'×'.join(map(str, shape))}"
    if loader != "auto":
        return loader, f"config.data.loader={loader}; {size}"
    if need <= budget:
        return "device", f"{size} ≤ {words}"
    return "grain", f"{size} > {words}"


# ----------------------------------------------------------------------------
# Dispatch from config
# ----------------------------------------------------------------------------


def load(data_config: Any, *, stream: bool = False) -> Dataset:
    """Loads the dataset a config asks for.

    Dispatch: ``name == "stacked_mnist"`` → :func:`stacked_mnist` from the MNIST IDX
    files in ``idx_dir`` (with ``num_examples`` and ``seed``, when the config has
    them); ``idx_dir`` set → :func:`load_idx`; ``name`` in ``("ring8", "grid25")`` →
    :func:`mixture`; anything else → :func:`load_tfds`. Images are then center-cropped
    and resized when ``image_size`` is set.

    Args:
      data_config: An ``ml_collections.ConfigDict`` (or any object with these
        attributes): ``name`` (``"ring8"``, ``"grid25"``, ``"mnist"``,
        ``"fashion_mnist"``, ``"stacked_mnist"`` or any tfds name, optionally
        ``"name:version"``); ``idx_dir`` (folder of IDX files, or None);
        ``data_dir`` (tfds data folder, or None); ``split`` (e.g. ``"train"``);
        ``image_size`` (0: as stored; S: :func:`center_crop_resize` to S×S);
        ``memory_budget_bytes`` (see :func:`memory_budget`); for ``stacked_mnist``
        only, ``num_examples`` (default 128,000) and ``seed`` (default 0). Missing
        optional attributes count as None (0), and a missing ``split`` as ``"train"``.
      stream: a streamed dataset (``source`` set, no images in ``arrays``) for the Grain
        loader (:mod:`jaxgan.data.streaming`); images only.

    Returns:
      The loaded ``Dataset``.

    Raises:
      DataError: The dataset cannot be loaded; the message says why.

    Example:
      >>> import types
      >>> load(types.SimpleNamespace(name="grid25", idx_dir=None)).arrays["means"].shape
      (25, 2)
    """
    name = getattr(data_config, "name", None)
    if not name:
        raise DataError("The data config has no dataset name (config.data.name).")
    idx_dir = getattr(data_config, "idx_dir", None)
    data_dir = getattr(data_config, "data_dir", None) or None
    split = getattr(data_config, "split", None) or "train"
    image_size = int(getattr(data_config, "image_size", 0) or 0)
    budget = (
        memory_budget(data_config)[0] if getattr(data_config, "memory_budget_bytes", 0) else None
    )
    if name == STACKED_MNIST:
        if not idx_dir:
            raise DataError(
                "stacked_mnist is built from the MNIST IDX files: set config.data.idx_dir to "
                "the folder of MNIST's four IDX .gz files."
            )
        num = getattr(data_config, "num_examples", None) or STACKED_MNIST_SIZE
        if not stream:
            check_fits(STACKED_MNIST, num, _image_shape((28, 28, 3), image_size), budget=budget,
                       hint="fewer --config.data.num_examples")  # fmt: skip
        dataset = stacked_mnist(
            idx_dir, split=split, num_examples=num, seed=getattr(data_config, "seed", None) or 0,
            check_memory=False,
        )  # fmt: skip
        return _finish(dataset, image_size, stream)
    if idx_dir:
        base = name.split(":")[0].split("/")[0]
        if base not in IDX_NAMES:
            raise DataError(
                f"config.data.idx_dir is set, so the dataset name must be one of "
                f"{IDX_NAMES}, not {name!r}. Unset idx_dir to load {name!r}."
            )
        return _finish(load_idx(idx_dir, name=base, split=split), image_size, stream)
    if name in MIXTURES:
        if stream:
            raise DataError(f"{name} is an embedded 2-D mixture: it is drawn on the device.")
        return mixture(name)
    try:
        return load_tfds(
            name, split=split, data_dir=data_dir, image_size=image_size, stream=stream,
            budget=budget,
        )  # fmt: skip
    except NotPreparedError as e:
        _raise_not_prepared(name, data_dir, e)


def _raise_not_prepared(name: str, data_dir: str | None, error: NotPreparedError) -> None:
    """Raises the error for a tfds dataset that is not prepared: for MNIST and
    Fashion-MNIST, how to download their IDX files (the fix first)."""
    base = name.split(":")[0].split("/")[0]
    if base not in IDX_NAMES or data_dir:
        raise error
    raise DataError(
        f"{base} needs its data: python -m jaxgan.data download {base} --dir=data/{base}, "
        f"then --config.data.idx_dir=data/{base} (or set config.data.data_dir to a folder "
        f"holding tfds' prepared {base!r})."
    ) from error


# ----------------------------------------------------------------------------
# On-device sampling
# ----------------------------------------------------------------------------


def _pixel_values(value_range: tuple[float, float]) -> np.ndarray:
    """float32 (256,): the value of each uint8 pixel, correctly rounded.

    A table computed on the host in float64 maps 0 and 255 exactly to ``low`` and
    ``high`` on every backend; an on-device ``u8 * (high - low) / 255 + low`` does
    not, since XLA may fold the division into a multiply or fuse an FMA (1.0000001).
    """
    low, high = (float(v) for v in value_range)
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    table = low + (high - low) * (np.arange(256, dtype=np.float64) / 255.0)
    table[-1] = high
    return table.astype(np.float32)


def images_in_range(images: Any, value_range: tuple[float, float]) -> np.ndarray:
    """uint8 images as float32 in ``value_range`` on the host, pixel for pixel as
    :func:`sample_batch` converts them (0 → ``low``, 255 → ``high``).

    Example:
      >>> images_in_range(np.array([0, 255], np.uint8), (-1.0, 1.0)).tolist()
      [-1.0, 1.0]
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    return _pixel_values(value_range)[images]


def batch_indices(key: jax.Array, num: int, size: int) -> jax.Array:
    """int32 (num,): the examples a batch of ``num`` takes from ``size``, i.i.d. uniform with
    replacement, a pure function of ``key``: the one rule of both loaders (on device in
    :func:`sample_batch`, on the host in :mod:`jaxgan.data.streaming`)."""
    return jax.random.randint(key, (num,), 0, size)


def pixels_to_floats(images: Any, value_range: tuple[float, float]) -> jax.Array:
    """uint8 pixels as float32 in ``value_range`` through :func:`_pixel_values`' table (0 →
    ``low``, 255 → ``high`` exactly), as both loaders convert their batches."""
    return jnp.asarray(_pixel_values(value_range))[images]


def sample_batch(
    dataset_arrays: dict,
    key: jax.Array,
    num: int,
    *,
    dataset: Dataset,
    value_range: tuple[float, float],
    labels: bool = False,
) -> Any:
    """Draws ``num`` examples from the on-device arrays; pure and jit-able.

    * Images: indices ``jax.random.randint(key, (num,), 0, N)``, i.i.d. with
      replacement, so the batch is a pure function of the key; the uint8 rows are
      gathered first and only then converted to float32, ``x = low + (high - low)
      * u8 / 255`` (through a 256-entry table, so 0 → ``low`` and 255 → ``high``
      exactly). A ``value_range`` with an infinite end (a generator with a linear
      output) uses ``(0, 1)``.
    * Mixtures: component ``c`` uniform over the M means, ``x = means[c] + std *
      normal``; ``value_range`` is ignored.

    Under ``jax.jit``, ``num`` must be static, e.g. ``jax.jit(functools.partial(
    sample_batch, dataset=ds, value_range=(-1.0, 1.0)), static_argnums=2)``.

    Args:
      dataset_arrays: ``dataset.arrays``, usually after ``jax.device_put``.
      key: A PRNG key (``jax.random.key``).
      num: Number of examples (a Python int).
      dataset: The ``Dataset`` the arrays come from (its kind, shape and std).
      value_range: ``(low, high)`` that pixel values 0 and 255 map to.
      labels: also return the class labels of the drawn images (int32 (num,), from
        ``arrays["labels"]``, the same indices: the images are those drawn without).

    Returns:
      float32 array (num, *dataset.shape), or ``(images, labels)`` with ``labels``.

    Example:
      >>> ds = mixture("grid25")
      >>> x = sample_batch(ds.arrays, jax.random.key(0), 4, dataset=ds, value_range=(0.0, 1.0))
      >>> x.shape, x.dtype
      ((4, 2), dtype('float32'))
    """
    num = operator.index(num)
    if labels and not dataset.num_classes:
        raise DataError(
            f"dataset {dataset.name!r} has no class labels, which a class-conditional GAN "
            "trains with: MNIST-family IDX files and tfds datasets with a 'label' feature have "
            "them (or train it unconditionally: --config.model.conditioning=none)"
        )
    if dataset.kind == "mixture":
        means = jnp.asarray(dataset_arrays["means"], dtype=jnp.float32)
        component_key, noise_key = jax.random.split(key)
        component = jax.random.randint(component_key, (num,), 0, means.shape[0])
        noise = jax.random.normal(noise_key, (num, *dataset.shape), dtype=jnp.float32)
        return means[component] + jnp.float32(dataset.std) * noise
    if dataset.kind == "images":
        images = dataset_arrays["images"]
        if tuple(images.shape[1:]) != tuple(dataset.shape) or images.dtype != jnp.uint8:
            raise ValueError(
                f"dataset_arrays['images'] is {images.dtype} {images.shape}; expected uint8 "
                f"(N, {', '.join(map(str, dataset.shape))}) for dataset {dataset.name!r}."
            )
        index = batch_indices(key, num, images.shape[0])
        batch = pixels_to_floats(jnp.take(jnp.asarray(images), index, axis=0), value_range)
        if labels:
            classes = jnp.take(jnp.asarray(dataset_arrays["labels"]), index, axis=0)
            return batch, classes.astype(jnp.int32)
        return batch
    raise ValueError(f"Unknown dataset kind {dataset.kind!r}: expected 'mixture' or 'images'.")
