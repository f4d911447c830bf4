"""Training-speed benchmark of jaxgan's own train step on the canonical networks.

Times :func:`jaxgan.steps.make_train_step` -- the step ``train.py`` runs -- on the benchmark
networks of ``docs/MODELS.md`` (``mlp`` without dropout, ``dcgan28``, ``dcgan32``,
``dcgan64``), with Adam (2e-4, β 0.5, 0.999) for both networks, the non-saturating loss, one
D update per iteration and a synthetic real batch already on the device. The whole iteration
is one jitted call with the state donated; ``--steps`` iterations are dispatched and the
host blocks once at the end.

Prints one JSON line per run::

    python -m jaxgan.bench --model=dcgan28 --batch=64 [--steps=20] [--no-fresh_g_noise]
                           [--steps_per_dispatch=N]

With ``--steps_per_dispatch=N`` each jitted call runs N iterations as a ``lax.scan``
over the same step (the fused steps of ``config.steps_per_dispatch`` in ``train.py``).

Fields: ``model``, ``batch``, ``steps``, ``steps_per_dispatch``, ``fresh_g_noise``,
``img_per_s`` (full iterations), ``step_ms``, ``compile_s``, ``flops_per_iter`` (XLA's cost
analysis of one compiled step), ``gflops_per_s``, ``peak_gflops_per_s`` (a jitted fp32
matmul, 2048^3 on CPU and 8192^3 on an accelerator, measured in the same process, best of a
measurement before and one after the timed steps; at JAX's default matmul precision, which
on recent NVIDIA GPUs may mean TF32), ``fraction_of_peak``, the backend, device, versions
and ``XLA_FLAGS``. See ``docs/BENCHMARKS.md``.

This module reads the clock; it is a tool, not part of the library's pure layers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan import flags as jaxgan_flags
from jaxgan import hardware
from jaxgan import models as models_lib
from jaxgan import state as state_lib
from jaxgan import steps as steps_lib

BENCH_MODELS = ("toy2d", "mlp", "dcgan28", "dcgan32", "dcgan64", "sngan32", "sngan48", "sngan64")
DATA_SHAPES = {
    "toy2d": (2,),
    "mlp": (784,),
    "dcgan28": (28, 28, 1),
    "dcgan32": (32, 32, 3),
    "dcgan64": (64, 64, 3),
    "sngan32": (32, 32, 3),
    "sngan48": (48, 48, 3),
    "sngan64": (64, 64, 3),
}
ADAM = {"name": "adam", "b1": 0.5, "b2": 0.999, "eps": 1e-8}
LEARNING_RATE = 2e-4


def build_bench_gan(
    model: str, conv: str = "fast", spectral_norm: str = "default"
) -> state_lib.GAN:
    """The benchmark networks of docs/MODELS.md with Adam(2e-4, 0.5, 0.999) for G and D.

    ``mlp``'s discriminator runs without dropout, as docs/MODELS.md specifies for timing. ``conv``
    selects the convolution formulation of the convolutional networks (``"fast"``, the
    default of :mod:`jaxgan.models`; ``"lax"``, the plain ``lax`` convolutions and their
    automatic derivatives; ``"auto"``, the platform's choice,
    :func:`jaxgan.hardware.choose_conv`); it does not change parameters or outputs.
    ``spectral_norm`` as ``config.model.spectral_norm`` (the SN-ResNets' D has it by
    default).
    """
    if model not in BENCH_MODELS:
        raise ValueError(f"unknown benchmark model {model!r}; choose from {BENCH_MODELS}")
    if conv == "auto":
        conv = hardware.choose_conv(model)[0]
    if model.startswith("sngan"):
        models = models_lib.build_models(
            model, data_shape=DATA_SHAPES[model], conv=conv, spectral_norm=spectral_norm
        )
        opt = ml_collections.ConfigDict(ADAM)
        return state_lib.GAN(
            models=models,
            g_tx=state_lib.make_optimizer(opt, LEARNING_RATE),
            d_tx=state_lib.make_optimizer(opt, LEARNING_RATE),
        )
    models = models_lib.build_models(
        model, data_shape=DATA_SHAPES[model], spectral_norm=spectral_norm
    )
    if model == "mlp":
        models = dataclasses.replace(
            models, discriminator=models.discriminator.clone(dropout=False)
        )
    elif model != "toy2d":
        models = dataclasses.replace(
            models,
            generator=models.generator.clone(conv=conv),
            discriminator=models.discriminator.clone(conv=conv),
        )
    opt = ml_collections.ConfigDict(ADAM)
    return state_lib.GAN(
        models=models,
        g_tx=state_lib.make_optimizer(opt, LEARNING_RATE),
        d_tx=state_lib.make_optimizer(opt, LEARNING_RATE),
    )


def default_peak_size() -> int:
    """Matmul size for the peak: 2048 fills a CPU; an accelerator needs 8192."""
    return 2048 if jax.default_backend() == "cpu" else 8192


def measure_matmul_peak(size: int | None = None, repeats: int = 5) -> float:
    """Measured fp32 FLOP/s of a jitted ``size x size`` matmul (best of ``repeats``)."""
    size = size or default_peak_size()
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


def _flops(stage) -> float:
    analysis = stage.cost_analysis()
    if isinstance(analysis, list | tuple):  # older jax returned one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0)) if analysis else 0.0


def run(
    model: str,
    batch: int,
    *,
    steps: int = 20,
    warmup: int = 2,
    fresh_g_noise: bool = True,
    conv: str = "fast",
    peak_flops: float | None = None,
    seed: int = 0,
    steps_per_dispatch: int = 1,
    spectral_norm: str = "default",
    augment: str = "",
) -> dict:
    """Times ``steps`` iterations of jaxgan's train step; returns the JSON record."""
    if batch < 1 or steps < 1 or warmup < 0 or steps_per_dispatch < 1:
        raise ValueError("batch, steps and steps_per_dispatch must be >= 1 and warmup >= 0")
    if steps % steps_per_dispatch:
        raise ValueError(
            f"steps ({steps}) must be a multiple of steps_per_dispatch ({steps_per_dispatch})"
        )
    gan = build_bench_gan(model, conv, spectral_norm)
    key = jax.random.key(seed)
    state = state_lib.create_state(gan, key)
    real_key, train_key = jax.random.split(jax.random.fold_in(key, 1))
    lo = 0.0 if model in ("mlp", "toy2d") else -1.0
    real = jax.random.uniform(real_key, (1, batch, *DATA_SHAPES[model]), jnp.float32, lo, 1.0)
    train_step = steps_lib.make_train_step(
        gan, loss="non_saturating", d_steps=1, fresh_g_noise=fresh_g_noise, augment=augment
    )

    def fused(state, real, key):  # steps_per_dispatch iterations; metrics of the last
        state, metrics = jax.lax.scan(
            lambda s, _: train_step(s, real, key), state, length=steps_per_dispatch
        )
        return state, jax.tree.map(lambda x: x[-1], metrics)

    one_step = jax.jit(train_step, donate_argnums=0)
    jitted = one_step if steps_per_dispatch == 1 else jax.jit(fused, donate_argnums=0)

    t0 = time.perf_counter()
    lowered = jitted.lower(state, real, train_key)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    # XLA's count on one compiled (optimised) step; the lowered one as a fallback. (A
    # scan's cost analysis would count its body once, not steps_per_dispatch times.)
    single = lowered if steps_per_dispatch == 1 else one_step.lower(state, real, train_key)
    flops = _flops(compiled if steps_per_dispatch == 1 else single.compile()) or _flops(single)

    dispatches = steps // steps_per_dispatch
    metrics = None
    for _ in range(-(-warmup // steps_per_dispatch)):
        state, metrics = compiled(state, real, train_key)
    jax.block_until_ready((state, metrics))
    t0 = time.perf_counter()
    for _ in range(dispatches):
        state, metrics = compiled(state, real, train_key)
    jax.block_until_ready((state, metrics))
    step_s = (time.perf_counter() - t0) / steps

    if peak_flops is None:
        peak_flops = measure_matmul_peak()
    # The machine may be shared: the peak is the best of a measurement before and after.
    peak_flops = max(peak_flops, measure_matmul_peak())
    gflops_per_s = flops / step_s / 1e9
    return {
        "impl": "jaxgan",
        "model": model,
        "batch": batch,
        "steps": steps,
        "steps_per_dispatch": steps_per_dispatch,
        "fresh_g_noise": fresh_g_noise,
        "conv": getattr(gan.models.generator, "conv", None),  # auto resolved; None: no convs
        "spectral_norm": spectral_norm,
        "augment": augment,
        "img_per_s": round(batch / step_s, 2),
        "step_ms": round(step_s * 1e3, 3),
        "compile_s": round(compile_s, 3),
        "compilation_cache": jax.config.jax_compilation_cache_dir or None,
        "flops_per_iter": flops,
        "gflops_per_s": round(gflops_per_s, 2),
        "peak_gflops_per_s": round(peak_flops / 1e9, 2),
        "peak_matmul_size": default_peak_size(),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "fraction_of_peak": round(gflops_per_s * 1e9 / peak_flops, 4),
        "d_loss": float(metrics["d_loss"]),
        "g_loss": float(metrics["g_loss"]),
        "finite": bool(metrics["finite"]),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "cpu_model": hardware.cpu_model(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", required=True, choices=BENCH_MODELS,
        help="network to time (docs/MODELS.md); required",
    )  # fmt: skip
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[64],
        help="batch size; several give one run each (default 64)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=20, help="timed iterations (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations (default 2)")
    parser.add_argument(
        "--fresh_g_noise",
        "--fresh-g-noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="new noise and a second G forward for the G update (Algorithm 1 of Goodfellow "
        "et al., the trainer's default: on); --no-fresh_g_noise reuses the D update's fake "
        "batch, as the PyTorch peer does",
    )
    parser.add_argument(
        "--conv", choices=hardware.CONV_CHOICES, default="auto",
        help="the convolution formulation: auto (the trainer's default: this platform's "
        "measured choice), fast or lax (docs/BENCHMARKS.md)",
    )  # fmt: skip
    parser.add_argument(
        "--steps_per_dispatch",
        "--steps-per-dispatch",
        type=int,
        default=1,
        help="iterations per jitted call, as a lax.scan (must divide --steps; default 1)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the parameters and data (default 0)"
    )
    parser.add_argument(
        "--spectral_norm", choices=("default", "none", "d", "g_and_d"), default="default",
        help="spectral normalization (default: the network's own; on in the SN-ResNets' D)",
    )  # fmt: skip
    parser.add_argument(
        "--compilation_cache", default=None, help=jaxgan_flags.COMPILATION_CACHE_HELP
    )
    parser.add_argument(
        "--augment", default="",
        help="DiffAugment policy in every D evaluation, e.g. color,translation,cutout "
        "(default: off)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        jaxgan_flags.use_compilation_cache(args.compilation_cache)
        peak = measure_matmul_peak()
        for batch in args.batch:
            record = run(
                args.model,
                batch,
                steps=args.steps,
                warmup=args.warmup,
                fresh_g_noise=args.fresh_g_noise,
                conv=args.conv,
                peak_flops=peak,
                seed=args.seed,
                steps_per_dispatch=args.steps_per_dispatch,
                spectral_norm=args.spectral_norm,
                augment=args.augment,
            )
            print(json.dumps(record), flush=True)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def entry_point() -> None:
    """``jaxgan-bench``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
