"""The class-conditional dcgan28 of ``mnist_cgan`` on Fashion-MNIST.

Command:   python train.py --config=jaxgan/configs/fashion_mnist_cgan.py \
               --workdir=runs/fashion_mnist_cgan --config.data.idx_dir=data/fashion_mnist
           (get the files with `python -m jaxgan.data download fashion_mnist
           --dir=data/fashion_mnist`)
Metrics:   class_accuracy through jaxgan's Fashion-MNIST classifier (floor: its test
           accuracy, ~0.9), per-class FID. Results: docs/RESULTS.md.
"""

from jaxgan.configs import mnist_cgan


def get_config():
    config = mnist_cgan.get_config()
    config.data.name = "fashion_mnist"
    return config
