"""How long the FID Inception network takes on this machine, per image and for N images.

    python benchmarks/inception_speed.py --num=10000 [--size=32] [--channels=3]

Runs :func:`jaxgan.inception_features.extract` (batches of 50, one compiled shape) on
``num`` random images with the seeded random weights of the parity check (the real
weights cost the same: the arithmetic does not depend on the values), and prints one
JSON line: the compile time, the images per second, and the wall time of ``num`` images.
Record the CPU model (``lscpu``) beside every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time

import jax
import numpy as np

from jaxgan import inception, inception_features


def _random_weights() -> inception_features.InceptionWeights:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inception_parity.py")
    spec = importlib.util.spec_from_file_location("inception_parity", path)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    state_dict = parity.random_state_dict(inception.torch_state_dict_shapes(), 0)
    return inception_features.InceptionWeights(
        inception.params_from_torch(state_dict), "0" * 64, "seeded random weights"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10_000, help="images (default 10,000)")
    parser.add_argument("--size", type=int, default=32, help="image side (default 32)")
    parser.add_argument("--channels", type=int, default=3, help="1 or 3 (default 3)")
    args = parser.parse_args()
    weights = _random_weights()
    rng = np.random.default_rng(0)
    shape = (inception_features.BATCH, args.size, args.size, args.channels)
    batch = rng.uniform(0, 1, shape).astype(np.float32)
    started = time.perf_counter()
    inception_features.extract(weights, batch)  # compiles
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    inception_features.extract(
        weights, lambda a, b: batch[: b - a], args.num, log=lambda m: print(m, flush=True)
    )
    wall = time.perf_counter() - started
    print(json.dumps({
        "num": args.num, "image": [args.size, args.size, args.channels],
        "batch": inception_features.BATCH, "first_call_s": round(compile_s, 1),
        "wall_s": round(wall, 1), "images_per_s": round(args.num / wall, 2),
        "seconds_per_50000": round(50_000 * wall / args.num), "cpu": _cpu_model(),
        "cores": os.cpu_count(), "backend": jax.default_backend(), "jax": jax.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
