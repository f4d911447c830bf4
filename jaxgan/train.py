"""Train a GAN: the training command line (``python train.py``, ``jaxgan-train``).

    python train.py [--config=PRESET_OR_FILE] [--workdir=DIR] [--config.FIELD=VALUE ...]

With no argument it trains the default preset (``grid25``: the 25-Gaussian grid, no
download) into ``runs/grid25``. Rerunning a command on an existing workdir resumes it.
Exit status: 0 done; 2 bad input (one line on stderr says what); 1 training stopped
(non-finite updates, a failed save); 128 + N after signal N (SIGINT 130, SIGTERM 143)
once a checkpoint of the step reached is saved.

This module parses the command line, checks every ``--config.FIELD=VALUE`` against the
config before anything runs (an unknown field gets a suggestion, a value of the wrong type
the expected type), and calls :func:`jaxgan.trainer.train_and_evaluate`. It is the only
module that imports the trainer.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
from typing import Any

import jax
from absl import flags
from absl import logging as absl_logging
from ml_collections import ConfigDict, config_flags

from jaxgan import configs, errors, trainer
from jaxgan import flags as jaxgan_flags
from jaxgan.run_folder import flatten_config

PROG = "train.py"
CONFIG_DIR = os.path.dirname(os.path.abspath(configs.__file__))
DEFAULT_PRESET = "grid25"
NOT_PRESETS = ("__init__", "default")
FIELDS_DOC = "jaxgan/configs/default.py"


def presets() -> dict[str, str]:
    """``{name: the first line of its docstring}`` of every preset in jaxgan/configs."""
    out = {}
    for name in sorted(os.listdir(CONFIG_DIR)):
        stem = name.removesuffix(".py")
        if name.endswith(".py") and stem not in NOT_PRESETS:
            with open(os.path.join(CONFIG_DIR, name)) as f:
                doc = ast.get_docstring(ast.parse(f.read())) or ""
            out[stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def usage() -> str:
    lines = [
        "usage: python train.py [--config=PRESET_OR_FILE] [--workdir=DIR] "
        "[--config.FIELD=VALUE ...]",
        "",
        "Trains a GAN, or resumes the run in --workdir (default runs/<preset>). With no",
        f"argument: the {DEFAULT_PRESET} preset (embedded data, about 2 minutes on a 2-core CPU).",
        "",
        "presets (--config=NAME, or a path to a config file):",
    ]
    for name, line in presets().items():
        lines.append(f"  {name:<22}{line}")
    lines += [
        "",
        f"Every field, with its meaning and default: {FIELDS_DOC} (set one with",
        "--config.FIELD=VALUE, e.g. --config.num_steps=5000 --config.model.conv=lax).",
        "",
        "flags:",
        "  --config=PRESET_OR_FILE   a preset name or a config file (default grid25)",
        "  --workdir=DIR             run folder (default runs/<preset>); rerun to resume",
        "  --coordinator_address=HOST:PORT --num_processes=N --process_id=I",
        "                            several processes (or $JAX_COORDINATOR_ADDRESS, ...)",
        "  --distributed             jax.distributed with the cluster detected by JAX",
        "  --compilation_cache=DIR   reuse compiled programs across runs (or",
        "                            $JAX_COMPILATION_CACHE_DIR; off by default)",
        "  -h, --help                this help",
        "",
        "Exit status: 0 done; 2 bad input; 1 training stopped; 130/143 after Ctrl-C/SIGTERM.",
    ]
    return "\n".join(lines)


def _resolve_config(argv: list[str]) -> tuple[list[str], str]:
    """argv with ``--config=NAME`` made a path; the config file's path."""
    out, path = [], os.path.join(CONFIG_DIR, f"{DEFAULT_PRESET}.py")
    args = iter(argv)
    for arg in args:
        if arg == "--config":  # the two-token form
            arg = f"--config={next(args, '')}"
        if arg.startswith("--config="):
            value = arg.split("=", 1)[1]
            named = os.path.join(CONFIG_DIR, f"{value.removesuffix('.py')}.py")
            if not os.path.exists(value) and os.path.exists(named) and "/" not in value:
                value = named
            if not os.path.isfile(value):
                raise errors.ConfigError(
                    f"no config file {value!r}: give a preset ({', '.join(presets())}) or the "
                    "path to a config file"
                )
            path, arg = value, f"--config={value}"
        out.append(arg)
    return out, path


def _load_config(path: str) -> ConfigDict:
    spec = importlib.util.spec_from_file_location("jaxgan_user_config", path)
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    except Exception as e:  # a config file that fails to import or has no get_config
        raise errors.ConfigError(f"cannot load the config file {path}: {errors.one_line(e)}") from e


def _check_override(config: ConfigDict, arg: str) -> str:
    """One ``--config.FIELD=VALUE``, checked: the argument to pass on (a whole number
    written as ``1e3`` for an integer field becomes ``1000``)."""
    field, _, value = arg[len("--config.") :].partition("=")
    fields = flatten_config(config)
    if field not in fields:
        close = difflib.get_close_matches(field, list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise errors.ConfigError(
            f"unknown config field {field!r}{hint}; every field is in {FIELDS_DOC}"
        )
    current = fields[field]
    kind = type(current).__name__  # bool, int, float, str
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
        elif isinstance(current, int):
            try:
                int(value)
            except ValueError:
                number = float(value)
                if not number.is_integer():
                    raise
                return f"--config.{field}={int(number)}"
        elif isinstance(current, float):
            float(value)
    except ValueError:
        expected = {"bool": "True or False", "int": "a whole number (e.g. 1000)"}.get(
            kind, "a number (e.g. 0.5)"
        )
        raise errors.ConfigError(f"config.{field} takes {expected}, not {value!r}") from None
    return arg


def _check_args(argv: list[str]) -> tuple[list[str], str]:
    """Checks the command line before absl sees it; returns ``(argv, config path)``."""
    rest = argv[1:]
    for arg in rest:
        if not arg.startswith("-"):
            hint = (
                f" Give a config as --config={arg}."
                if arg.endswith(".py") or arg.removesuffix(".py") in presets()
                else " See --help."
            )
            if arg == "help":
                hint = " Did you mean --help?"
            raise errors.ConfigError(
                f"unexpected argument {arg!r}: train.py takes flags only.{hint}"
            )
    rest, path = _resolve_config(rest)
    config = _load_config(path)
    rest = [_check_override(config, a) if a.startswith("--config.") else a for a in rest]
    return [argv[0], *rest], path


def _define_flags(path: str) -> Any:
    config_flag = config_flags.DEFINE_config_file(
        "config", path, "Preset name or config file (jaxgan/configs/*.py).", lock_config=True
    )
    flags.DEFINE_string("workdir", None, "Run folder (default: runs/<config file name>).")
    flags.DEFINE_string(
        "coordinator_address", None,
        "host:port of process 0, for several processes (or $JAX_COORDINATOR_ADDRESS).",
    )  # fmt: skip
    flags.DEFINE_integer("num_processes", None, "Number of processes (or $JAX_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", None, "This process's index (or $JAX_PROCESS_ID).")
    flags.DEFINE_bool(
        "distributed", False,
        "Initialize jax.distributed, detecting the cluster where JAX can (TPU pods, SLURM, "
        "...). Implied by --coordinator_address or $JAX_COORDINATOR_ADDRESS.",
    )  # fmt: skip
    flags.DEFINE_string("compilation_cache", None, jaxgan_flags.COMPILATION_CACHE_HELP)
    return config_flag


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if any(arg in ("-h", "--help", "-help", "--helpfull") for arg in argv[1:]):
        print(usage())
        return errors.EXIT_OK
    # Libraries' notices through absl (tfds, orbax) are noise here: jaxgan says what matters.
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        argv, path = _check_args(argv)
        config_flag = _define_flags(path)
        try:
            flags.FLAGS(argv)
            config = config_flag.value
            config.keys()  # a config file that failed to load raises only when first touched
        except Exception as e:  # anything the checks above did not foresee
            raise errors.ConfigError(errors.one_line(e)) from e
    except errors.JaxganError as e:
        return errors.report(PROG, e)
    fl = flags.FLAGS
    try:
        jaxgan_flags.use_compilation_cache(fl.compilation_cache)
    except errors.JaxganError as e:
        return errors.report(PROG, e)
    name = os.path.splitext(os.path.basename(config_flags.get_config_filename(fl["config"])))[0]
    workdir = fl.workdir or os.path.join("runs", name)
    if fl.distributed or fl.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        try:
            jax.distributed.initialize(
                coordinator_address=fl.coordinator_address,
                num_processes=fl.num_processes,
                process_id=fl.process_id,
            )
        except Exception as e:
            message = f"jax.distributed.initialize failed: {errors.one_line(e)}"
            return errors.report(PROG, errors.ConfigError(message))
    try:
        given = {a[len("--config.") :].partition("=")[0] for a in argv if a.startswith("--config.")}
        return trainer.train_and_evaluate(config, workdir, given=given)
    except errors.JaxganError as e:
        status = errors.report(PROG, e)
        if isinstance(e, errors.TrainingError):
            # After a failed asynchronous save, orbax leaves non-daemon threads waiting for
            # signals that never come, and a normal exit would hang on them. Everything of
            # ours is closed by now (metrics flushed, no write pending), so leave at once.
            sys.stdout.flush()
            os._exit(status)
        return status


def entry_point() -> None:
    """``jaxgan-train``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
