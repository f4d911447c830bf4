"""dcgan28 on Fashion-MNIST.

Command:   python train.py --config=jaxgan/configs/fashion_mnist_dcgan.py \
               --workdir=runs/fashion_mnist_dcgan --config.data.idx_dir=data/fashion_mnist
           (get it with `python -m jaxgan.data download fashion_mnist --dir=data/fashion_mnist`)
Run time:  as mnist_dcgan: about 13 minutes for 5,000 iterations on a 2-core CPU.
Expected:  recognisable garments in samples_*.png after ~3,000 iterations.
"""

from jaxgan.configs import mnist_dcgan


def get_config():
    config = mnist_dcgan.get_config()
    config.data.name = "fashion_mnist"
    return config
