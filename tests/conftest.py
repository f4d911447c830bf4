"""Shared test settings: strict JAX promotion rules catch silent broadcasting bugs."""

import importlib.util
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


@pytest.fixture
def pacgan_recipe():
    """Flags for grid25/ring8 with PacGAN's own slow recipe (Adam 1e-4, β1 0.8, EMA).

    For tests whose assertions were measured with it: G moves little per step, so runs
    on 1 and 4 devices stay within float tolerance, and G is still a point mass at the
    first evaluation (the EMA has no warm-up). The presets' tuned recipe
    (docs/RESULTS.md) learns faster.
    """
    return [
        "--config.g_lr=1e-4", "--config.d_lr=1e-4", "--config.optimizer.b1=0.8",
        "--config.optimizer.lr_decay=1", "--config.r1_gamma=0", "--config.ema_decay=0.999",
        "--config.pack=1", "--config.ema_warmup=False",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def random_inception_weights():
    """The FID Inception network with the seeded random weights of the parity check
    (benchmarks/inception_parity.py; tests/test_inception.py proves it equal to
    pytorch-fid's), under a made-up hash: for the plumbing, never for scores."""
    from jaxgan import inception, inception_features

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "inception_parity.py")
    spec = importlib.util.spec_from_file_location("inception_parity", path)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)  # NumPy only; torch only in its main()
    state_dict = parity.random_state_dict(inception.torch_state_dict_shapes(), 0)
    variables = inception.params_from_torch(state_dict)
    return inception_features.InceptionWeights(variables, "0" * 64, "seeded random weights")


@pytest.fixture
def small_batches(monkeypatch):
    """Inception batches of 8, so that few 299x299 images run on the CPU."""
    from jaxgan import inception_features

    monkeypatch.setattr(inception_features, "BATCH", 8)
