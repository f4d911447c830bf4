"""Download the IDX files of MNIST or Fashion-MNIST for ``--config.data.idx_dir``.

    python -m jaxgan.data download mnist|fashion_mnist [--dir=DIR] [--mirror=URL ...]

Fetches the four standard ``.gz`` files into ``DIR``, from the first mirror that serves
them, each checked against its pinned size and sha256 (``jaxgan.data.IDX_CHECKSUMS``);
a file appears under its own name only once checked. Run it again after an interruption:
it continues the ``FILE.part`` left behind, and downloads nothing that is already there
and right. Then train with ``--config.data.idx_dir=DIR``.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys

from tqdm import tqdm

from jaxgan import data, errors
from jaxgan.data import download

PROG = "jaxgan.data"


def _parser() -> argparse.ArgumentParser:
    indent = "\n" + " " * 17
    mirrors = "".join(
        f"  {name + ':':15}{indent.join(urls)}\n" for name, urls in download.MIRRORS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.data",
        description=__doc__.split("\n")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"the mirrors tried in order without --mirror:\n{mirrors}\n"
        "exit status: 0 when the four files are in DIR, checked; 2 when they are not (the\n"
        "one error line says what to do); 130 when interrupted (run it again to continue).",
    )
    parser.add_argument(
        "command", choices=["download"], help="download: fetch the four IDX .gz files into DIR"
    )
    parser.add_argument("name", choices=data.IDX_NAMES, help="the dataset")
    parser.add_argument(
        "--dir", default=None, metavar="DIR",
        help="folder the files go to, made if missing (default: data/NAME, e.g. data/mnist)",
    )  # fmt: skip
    parser.add_argument(
        "--mirror", action="append", default=None, metavar="URL",
        help="URL of a folder holding the four files, instead of the usual mirrors; repeat "
        "it for several, tried in order (default: the mirrors below)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory = args.dir or os.path.join("data", args.name)
    # One bar per file on stderr, only when it is a terminal (disable=None).
    bar = functools.partial(tqdm, unit="B", unit_scale=True, unit_divisor=1024, disable=None)
    try:
        fetched = download.download(args.name, directory, mirrors=args.mirror, progress=bar)
    except errors.JaxganError as e:
        return errors.report(PROG, e)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; run the same command again to continue the download.",
            file=sys.stderr,
        )
        return errors.EXIT_SIGNAL_BASE + signal.SIGINT
    got = sum(f.url is not None for f in fetched)
    print(
        f"{data.IDX_TITLES[args.name]}: the four IDX files are in {os.path.abspath(directory)} "
        f"({got} downloaded, {len(fetched) - got} already there; all four match their "
        "pinned sha256)."
    )
    print(f"Train with: --config.data.idx_dir={directory}")
    return errors.EXIT_OK


def entry_point() -> None:
    """``jaxgan-data``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
