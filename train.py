"""Train a GAN: ``python train.py [--config=PRESET] [--workdir=DIR] [--config.FIELD=VALUE ...]``.

The command line lives in :mod:`jaxgan.train` (also installed as ``jaxgan-train``); see
``python train.py --help``.
"""

import sys

from jaxgan.train import main

if __name__ == "__main__":
    sys.exit(main())
