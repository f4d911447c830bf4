"""Conditional SNGAN on CIFAR-10: class-conditional BatchNorm in G, a projection D.

``cifar10_sngan`` with the labels of tfds' ``label`` feature: G's BatchNorms are
class-conditional and D is the projection discriminator of Miyato & Koyama 2018
(cGANs with projection discriminator), as StudioGAN's conditional SNGAN
(POSTECH-CVLab/PyTorch-StudioGAN, SNGAN with ``cond_method`` PD).

Published: StudioGAN's benchmark, conditional SNGAN on CIFAR-10: IS 8.83, FID 9.01
           (StudioGAN's protocol: 50,000 samples against the training set).
Not measured here: needs CIFAR-10 prepared with tfds; trained end to end here on
           tfds.testing.mock_data only (tests/test_toolkit_e2e.py, with a resume).

Command:   python train.py --config=jaxgan/configs/cifar10_sngan_cond.py \
               --workdir=runs/sngan_cond --config.data.data_dir=DIR_WITH_PREPARED_CIFAR10
"""

from jaxgan.configs import cifar10_sngan


def get_config():
    config = cifar10_sngan.get_config()
    config.model.conditioning = "projection"
    return config
