"""Flags that several command lines share: discriminator-guided sampling's, and the
persistent compilation cache.

``jaxgan.sample`` and ``jaxgan.evaluate`` both draw samples with ``--method=plain|drs|mh``
(:mod:`jaxgan.guided`); the flags, their checks and their translation into the keyword
arguments of :meth:`jaxgan.run_folder.TrainedRun.sample_guided` live here, once.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import jax

from jaxgan import errors, sampling

__all__ = ["add_guided_flags", "check_guided_flags", "guided_settings", "use_compilation_cache"]

COMPILATION_CACHE_HELP = (
    "a folder for JAX's persistent compilation cache (created if absent; default "
    "$JAX_COMPILATION_CACHE_DIR, else none): a second run of the same programs loads them "
    "instead of compiling (docs/BENCHMARKS.md has the seconds saved)"
)


def use_compilation_cache(path: str | None) -> str | None:
    """Turns on JAX's persistent compilation cache in ``path`` (``jax_compilation_cache_dir``);
    None or "" leaves JAX's setting (``$JAX_COMPILATION_CACHE_DIR``) as it is. Returns the
    folder in use, or None.

    A cached program is the program XLA would compile again, so results do not change
    (tested bitwise); only compile time does. Programs that compile in under
    ``jax_persistent_cache_min_compile_time_secs`` (1 s) are not written.

    Raises:
      errors.ConfigError: ``path`` cannot be created or written.
    """
    if path:
        path = os.path.abspath(os.path.expanduser(path))
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise errors.ConfigError(
                f"cannot create the compilation cache folder {path} ({e.strerror}); give a "
                "writable folder"
            ) from e
        if not os.access(path, os.W_OK):
            raise errors.ConfigError(
                f"the compilation cache folder {path} is not writable; give a writable folder"
            )
        jax.config.update("jax_compilation_cache_dir", path)
    return jax.config.jax_compilation_cache_dir or None


def add_guided_flags(parser: argparse.ArgumentParser, *, method_help: str) -> None:
    """``--method``, ``--chain_length``, ``--drs_percentile``, ``--drs_gamma``,
    ``--refine_d_steps``."""
    parser.add_argument("--method", choices=sampling.METHODS, default="plain", help=method_help)
    parser.add_argument(
        "--chain_length", type=int, default=sampling.GUIDED_DEFAULTS["chain_length"],
        help="mh: proposals per sample (default %(default)s; Turner et al. go to 640)",
    )  # fmt: skip
    parser.add_argument(
        "--drs_percentile", type=float, default=sampling.GUIDED_DEFAULTS["percentile"],
        help="drs: gamma as this percentile of F over the burn-in (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--drs_gamma", type=float, default=None,
        help="drs: a fixed gamma instead of the percentile (0: exact rejection sampling; "
        "default: none, the percentile)",
    )  # fmt: skip
    parser.add_argument(
        "--refine_d_steps", type=int, default=0,
        help="drs/mh: first train D further with G fixed for this many steps (batches of "
        f"{sampling.REFINE_BATCH} real and {sampling.REFINE_BATCH} generated; default 0: the "
        "run's D as it is; 6000 is what the 2-D bars were measured with)",
    )  # fmt: skip


def check_guided_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses values the guided methods cannot use (``parser.error``: exit status 2)."""
    if args.chain_length < 1:
        parser.error(f"--chain_length must be positive, got {args.chain_length}")
    if args.refine_d_steps < 0:
        parser.error(f"--refine_d_steps must be 0 or more, got {args.refine_d_steps}")
    if not 0 <= args.drs_percentile <= 100:
        parser.error(f"--drs_percentile must be in [0, 100], got {args.drs_percentile}")


def guided_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of a guided draw (:data:`jaxgan.sampling.GUIDED_DEFAULTS`' keys)."""
    return {
        "chain_length": args.chain_length,
        "percentile": None if args.drs_gamma is not None else args.drs_percentile,
        "gamma": args.drs_gamma or 0.0,
        "refine_steps": args.refine_d_steps,
    }
