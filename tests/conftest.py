"""Shared test settings: strict JAX promotion rules catch silent broadcasting bugs."""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_DATA = os.environ.get(
    "JAXGAN_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"),
)


def _idx_dir(name: str, title: str) -> str:
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"{title} IDX files not found in {path} (set JAXGAN_SHARED_DATA)")
    return path


@pytest.fixture
def mnist_idx_dir():
    return _idx_dir("mnist", "MNIST")


@pytest.fixture
def fashion_mnist_idx_dir():
    return _idx_dir("fashion_mnist", "Fashion-MNIST")
