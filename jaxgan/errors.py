"""One error hierarchy for what a user can fix, and the exit status of each.

Every error jaxgan raises for bad input, missing data or an unusable run folder is a
:class:`JaxganError` whose message is one line saying what to do. The command lines
(``train.py``, ``python -m jaxgan.sample``, ``jaxgan.evaluate``, ``jaxgan.bench``) print
it with :func:`report` as ``PROG: error: MESSAGE`` and exit with its ``exit_status``:

====================  ======  ==================================================
error                 status  when
====================  ======  ==================================================
ConfigError           2       a config value no run can use
DataError             2       a dataset that cannot be loaded
RunError              2       a run folder that cannot be used as asked
EvaluationError       2       an evaluation that cannot run (e.g. no real data)
TrainingError         1       training started and cannot go on (non-finite
                              updates, a failed checkpoint write)
====================  ======  ==================================================

A run stopped by signal N exits with ``EXIT_SIGNAL_BASE + N`` (130 for SIGINT, 143 for
SIGTERM), as shells report it. This module imports nothing of jaxgan: every other
module may raise these.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_SIGNAL_BASE",
    "EXIT_TRAINING_STOPPED",
    "ConfigError",
    "DataError",
    "EvaluationError",
    "JaxganError",
    "RunError",
    "TrainingError",
    "one_line",
    "report",
]

EXIT_OK = 0
EXIT_TRAINING_STOPPED = 1
EXIT_BAD_INPUT = 2
EXIT_SIGNAL_BASE = 128


class JaxganError(Exception):
    """A problem the user can fix; the message is one line that says what to do."""

    exit_status = EXIT_BAD_INPUT


class ConfigError(JaxganError, ValueError):
    """A config value that no run can use (the message names the field)."""


class DataError(JaxganError, ValueError):
    """A dataset could not be loaded; the message says what to do."""


class RunError(JaxganError):
    """A run folder that cannot be used as asked (another config, no checkpoint, ...)."""


class EvaluationError(JaxganError, ValueError):
    """The evaluation cannot run (e.g. no real data); the message says what to do."""


class TrainingError(RunError):
    """Training cannot go on (e.g. non-finite updates); the message names the step."""

    exit_status = EXIT_TRAINING_STOPPED


def one_line(error: BaseException) -> str:
    """The error's message on one line (newlines and runs of spaces folded)."""
    return " ".join(str(error).split()) or type(error).__name__


def report(prog: str, error: JaxganError, *, file: TextIO | None = None) -> int:
    """Prints ``PROG: error: MESSAGE`` on stderr; returns the error's exit status."""
    print(f"{prog}: error: {one_line(error)}", file=file or sys.stderr, flush=True)
    return error.exit_status
