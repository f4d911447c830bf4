"""pytorch-fid's FID Inception-v3 run on seeded weights: the golden outputs of jaxgan's port.

``tests/test_inception.py`` checks :mod:`jaxgan.inception` and :mod:`jaxgan.pth` against the
files this script writes, without torch. The script runs in a separate virtual environment
with torch, which is never a dependency of jaxgan (the ``parity`` extra of pyproject.toml
pins the same three packages)::

    python3 -m venv ../parity-venv      # beside the checkout, not inside it
    ../parity-venv/bin/pip install -e '.[parity]'   # torch 2.14.1, torchvision, pytorch-fid
    ../parity-venv/bin/python benchmarks/inception_parity.py   # ~20 s on 2 CPU cores

What it does:

1. Builds pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True)``,
   i.e. ``fid_inception_v3()``, with the weight download replaced by
   :func:`random_state_dict`: every float entry of the state dict drawn from
   ``np.random.default_rng(seed)`` over the sorted keys (He-scaled convolutions,
   BatchNorm close to the identity), so that activations stay of order 1 through the
   network. The test repeats the draw with NumPy alone (this file imports torch only in
   :func:`main`) and checks its sha256 first.
2. Runs it in eval mode on :func:`parity_images` (3 RGB 32x32, 2 grayscale 28x28
   repeated to RGB, 1 RGB 320x320, which is shrunk to 299) and records the pool3
   features, the logits and the logits without the fc bias, and a grid of the resized,
   scaled input (every 23rd pixel).
3. Records pytorch-fid's ``calculate_frechet_distance`` of :func:`fid_feature_sets`.
4. Writes two small state dicts with ``torch.save``, one in the legacy format
   (``_use_new_zipfile_serialization=False``) and one in the zip format, and their
   values in ``tests/golden/tiny_pth.json``.

Outputs (``tests/golden/``): ``inception_parity.npz`` (~100 KB), ``tiny_legacy.pth``,
``tiny_zip.pth``, ``tiny_pth.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from collections.abc import Mapping

import numpy as np

SEED_PROCEDURE_VERSION = 1
SEED = 0
GOLDEN_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "golden"
)
GRID_STEP = 23  # resized inputs recorded at rows and columns 0, 23, ..., 276 (13 x 13)


# ============================================================================
# The seeded inputs (NumPy only: the test repeats them)
# ============================================================================


def _uniform(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniform in [-1, 1), variance 1/3 (``Generator.random``: a stable stream)."""
    return 2.0 * rng.random(shape) - 1.0


def random_state_dict(
    shapes: Mapping[str, tuple[int, ...]], seed: int = SEED
) -> dict[str, np.ndarray]:
    """Seeded float32 values for every key of ``shapes`` (version 1 of the procedure).

    One ``np.random.default_rng(seed)`` runs over the sorted keys; with ``u`` uniform in
    ``[-1, 1)``: convolution weights ``[O, I, h, w]`` are ``u √(6 / (I h w))`` (He's
    variance ``2 / fan_in``), the fc weight ``u √(3 / 2048)``, BatchNorm's weight ``1 +
    0.1 u``, bias ``0.1 u``, running mean ``0.1 u``, running variance ``1 + 0.2 u``, the fc
    bias ``0.1 u``.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        u = _uniform(rng, shape)
        if key.endswith("conv.weight"):
            value = u * math.sqrt(6.0 / math.prod(shape[1:]))
        elif key == "fc.weight":
            value = u * math.sqrt(3.0 / shape[1])
        elif key.endswith(("bn.weight", "bn.running_var")):
            value = 1.0 + (0.1 if key.endswith("weight") else 0.2) * u
        elif key.endswith(("bias", "running_mean")):
            value = 0.1 * u
        else:
            raise ValueError(f"no rule for {key}")
        out[key] = value.astype(np.float32)
    return out


def parity_images(seed: int = SEED) -> dict[str, np.ndarray]:
    """The test images, NHWC float32 in [0, 1]: smooth gradients plus noise."""
    rng = np.random.default_rng(seed + 1)
    out = {}
    for name, (n, size, channels) in {
        "rgb32": (3, 32, 3),
        "gray28": (2, 28, 1),
        "rgb320": (1, 320, 3),
    }.items():
        ramp = np.linspace(0.0, 1.0, size)
        smooth = 0.5 * (ramp[None, :, None, None] + ramp[None, None, :, None])
        phase = rng.random((n, 1, 1, channels))
        noise = rng.random((n, size, size, channels))
        out[name] = np.clip(0.6 * ((smooth + phase) % 1.0) + 0.4 * noise, 0.0, 1.0).astype(
            np.float32
        )
    return out


def fid_feature_sets(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two seeded feature sets ``[200, 64]`` and ``[300, 64]`` with unlike, full covariances."""
    rng = np.random.default_rng(seed + 2)
    f1 = rng.random((200, 64)) @ (np.eye(64) + 0.3 * _uniform(rng, (64, 64)))
    f2 = 1.2 * rng.random((300, 64)) @ (np.eye(64) + 0.3 * _uniform(rng, (64, 64))) + 0.1
    return f1, f2


def sha256_of(arrays: Mapping[str, np.ndarray]) -> str:
    """A digest of names, shapes, dtypes and bytes, in sorted order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}{value.shape}{value.dtype.str}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


# ============================================================================
# torch
# ============================================================================


def _build_pytorch_fid(torch, seed: int):
    """pytorch-fid's InceptionV3([3]) and its fid_inception_v3(), weights from the seed."""
    import pytorch_fid.inception as pf
    import torchvision

    built = {}
    inception_v3 = torchvision.models.inception_v3

    def capture(*args, **kwargs):
        built["inception"] = inception_v3(*args, **kwargs)
        return built["inception"]

    def seeded_weights(*args, **kwargs):  # stands in for the download of the weights
        state = built["inception"].state_dict()  # Mixed_* already replaced: final keys
        shapes = {k: tuple(v.shape) for k, v in state.items() if "num_batches_tracked" not in k}
        values = random_state_dict(shapes, seed)
        loaded = {k: torch.from_numpy(v) for k, v in values.items()}
        loaded.update({k: v for k, v in state.items() if "num_batches_tracked" in k})
        built["numpy_state"] = values
        return loaded

    torchvision.models.inception_v3 = capture
    pf.load_state_dict_from_url = seeded_weights
    try:
        model = pf.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    finally:
        torchvision.models.inception_v3 = inception_v3
    return model, built["inception"].eval(), built["numpy_state"]


def _run_network(torch, model, inception, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch.nn.functional as F

    pool3, logits, unbiased, grids = [], [], [], []
    with torch.no_grad():
        for batch in images.values():
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            features = model(x)[0].flatten(1)
            pool3.append(features.numpy())
            logits.append(inception.fc(features).numpy())
            unbiased.append(torch.matmul(features, inception.fc.weight.T).numpy())
            resized = (
                2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
            )
            grids.append(resized.permute(0, 2, 3, 1)[:, ::GRID_STEP, ::GRID_STEP].numpy())
    return {
        "pool3": np.concatenate(pool3),
        "logits": np.concatenate(logits),
        "logits_unbiased": np.concatenate(unbiased),
        "resized_grid": np.concatenate(grids),
    }


def _tiny_state_dict(torch) -> dict:
    """A few tensors: a module's own state dict (with ``_metadata``), views, many dtypes."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        module[0].weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) / 8 - 0.25)
        module[0].bias.copy_(torch.tensor([0.1, -0.2]))
        module[1].num_batches_tracked.fill_(7)
    state = module.state_dict()
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5) * 0.5 - 3.0
    state["base"] = base
    state["transposed"] = base.t()  # non-contiguous, shares base's storage
    state["column"] = base[:, 2]  # storage offset 2, stride 5
    state["window"] = torch.arange(10, dtype=torch.int64)[3:7] * (-(2**40))  # offset 3
    state["scalar"] = torch.tensor(-7, dtype=torch.int64)
    state["half"] = torch.tensor([0.5, -1.25, 65504.0, 2.0**-24], dtype=torch.float16)
    state["double"] = torch.tensor([[1 / 3, -2.5], [1e300, -0.0]], dtype=torch.float64)
    state["int32"] = torch.tensor([-(2**31), 2**31 - 1, 5], dtype=torch.int32)
    state["uint8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    state["flags"] = torch.tensor([True, False, True])
    state["bfloat16"] = torch.tensor([1.0, -0.5, 3.140625], dtype=torch.bfloat16)
    state["empty"] = torch.zeros(0, 3)
    state["parameter"] = torch.nn.Parameter(torch.full((2,), 0.25))
    return state


def _tiny_expected(state: dict) -> dict:
    out = {}
    for key, tensor in state.items():
        t = tensor.detach()
        dtype = str(t.dtype).removeprefix("torch.")  # float32, int64, bfloat16, ...
        values = t.float().flatten().tolist() if dtype == "bfloat16" else t.flatten().tolist()
        out[key] = {"dtype": dtype, "shape": list(t.shape), "values": values}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=GOLDEN_DIR, help="the golden folder")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)

    import pytorch_fid
    import scipy
    import torch
    import torchvision
    from pytorch_fid.fid_score import calculate_frechet_distance

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    model, inception, numpy_state = _build_pytorch_fid(torch, SEED)
    images = parity_images(SEED)
    outputs = _run_network(torch, model, inception, images)

    num_params = sum(p.numel() for p in inception.parameters())
    torchvision_1000 = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False
    )
    num_params_1000 = sum(p.numel() for p in torchvision_1000.parameters())
    f1, f2 = fid_feature_sets(SEED)
    fid = calculate_frechet_distance(
        np.mean(f1, axis=0), np.cov(f1, rowvar=False), np.mean(f2, axis=0), np.cov(f2, rowvar=False)
    )
    shapes = {k: list(v.shape) for k, v in sorted(numpy_state.items())}
    versions = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_fid": pytorch_fid.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    np.savez_compressed(
        os.path.join(args.out, "inception_parity.npz"),
        seed_procedure_version=np.int64(SEED_PROCEDURE_VERSION),
        seed=np.int64(SEED),
        weights_sha256=np.array(sha256_of(numpy_state)),
        images_sha256=np.array(sha256_of(images)),
        fid_features_sha256=np.array(sha256_of({"f1": f1, "f2": f2})),
        state_dict_shapes=np.array(json.dumps(shapes)),
        groups=np.array(list(images)),
        group_sizes=np.array([len(v) for v in images.values()]),
        num_params=np.int64(num_params),
        num_params_torchvision_1000=np.int64(num_params_1000),
        num_state_floats=np.int64(sum(v.size for v in numpy_state.values())),
        fid=np.float64(fid),
        versions=np.array(json.dumps(versions)),
        **outputs,
    )

    tiny = _tiny_state_dict(torch)
    torch.save(
        tiny, os.path.join(args.out, "tiny_legacy.pth"), _use_new_zipfile_serialization=False
    )
    torch.save(tiny, os.path.join(args.out, "tiny_zip.pth"))
    with open(os.path.join(args.out, "tiny_pth.json"), "w") as f:
        json.dump(_tiny_expected(tiny), f, indent=1)
        f.write("\n")

    scale = {k: float(np.abs(v).mean()) for k, v in outputs.items()}
    print(f"versions {versions}")
    print(f"params {num_params:,} (torchvision 1000 classes: {num_params_1000:,}); FID {fid!r}")
    print(f"mean |output| {scale}; pool3 zeros {float((outputs['pool3'] == 0).mean()):.3f}")


if __name__ == "__main__":
    main()
