"""dcgan28 (3 channels) on Stacked MNIST: 1,000 modes, the mode-collapse benchmark.

Three independent random MNIST digits as the RGB channels, 28x28x3, as in the PacGAN
and VEEGAN experiments (PacGAN's code: 128,000 training images, batch 64, Adam 2e-4,
β1 0.5, 26,000 samples for the metric); built from MNIST's IDX files and
``config.data.seed`` (jaxgan.data.stacked_mnist).

Command:   python train.py --config=jaxgan/configs/stacked_mnist_dcgan.py \
               --workdir=runs/stacked_mnist_dcgan --config.data.idx_dir=data/mnist
           (get data/mnist with `python -m jaxgan.data download mnist --dir=data/mnist`)
           python -m jaxgan.evaluate --workdir=runs/stacked_mnist_dcgan
Run time:  about 0.2 s per iteration at batch 64 on a 2-core CPU (5,000 iterations ≈ 15 min;
           building the data ~2 s); seconds on a GPU. The evaluation (26,000 samples,
           78,000 channels classified) takes a few minutes on CPU, plus ~2 minutes once
           to train and cache the MNIST classifier.
Expected:  eval.json's ``modes`` (of 1,000) and ``kl`` (to uniform) beside the real-data
           floor (~1,000 modes, KL ~0.02 with 26,000 real images). Published (docs/EVALUATION.md):
           DCGAN 99 modes / KL 3.4 and VEEGAN 150 / 2.95 (Srivastava et al. 2017),
           PacDCGAN2 1000 / 0.06 (Lin et al. 2018, Table 2); not measured here yet.
"""

from jaxgan.configs import mnist_dcgan


def get_config():
    config = mnist_dcgan.get_config()
    config.data.name = "stacked_mnist"
    config.data.num_examples = 128_000  # stacked images built (PacGAN: 128,000)
    config.data.seed = 0  # seed of the digit draws that build the dataset (not of training)
    return config
