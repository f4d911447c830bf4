"""Shared test settings: strict JAX promotion rules catch silent broadcasting bugs."""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_DATA = os.environ.get(
    "JAXGAN_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"),
)


@pytest.fixture
def mnist_idx_dir():
    path = os.path.join(SHARED_DATA, "mnist")
    if not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"MNIST IDX files not found in {path} (set JAXGAN_SHARED_DATA)")
    return path


@pytest.fixture
def fashion_mnist_idx_dir():
    path = os.path.join(SHARED_DATA, "fashion_mnist")
    if not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"Fashion-MNIST IDX files not found in {path} (set JAXGAN_SHARED_DATA)")
    return path
