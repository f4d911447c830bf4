"""SNGAN (Miyato et al. 2018): the SN-ResNet 32 on CIFAR-10 with the hinge loss.

The recipe of Miyato et al. 2018 for the ResNet on CIFAR-10, as Mimicry trains it
(kwotsin/mimicry, SNGAN 32): hinge loss, n_dis = 5 D updates per G update, Adam 2e-4 with
β = (0, 0.9), batch 64, the learning rate decaying linearly to 0, 100,000 iterations;
spectral norm in every layer of D, BatchNorm in G, a 128-d normal latent.

Published: Miyato et al. 2018 (SN-GANs, ResNet, CIFAR-10): IS 8.22 ± 0.05, FID 21.7 ± 0.21
           (their protocol: 50,000 samples; FID against 10,000 test images);
           Mimicry (Lee & Town 2020), SNGAN: IS 7.97, FID 16.77 (50,000 samples against
           the 50,000 training images).
Not measured here: needs CIFAR-10 prepared with tfds (TensorFlow and a download); on a
           2-core CPU 100,000 iterations would take weeks (docs/BENCHMARKS.md).
           tests/test_toolkit_e2e.py trains its conditional variant (the same network
           and recipe, with labels) end to end on tfds.testing.mock_data.

Command:   python train.py --config=jaxgan/configs/cifar10_sngan.py --workdir=runs/sngan \
               --config.data.data_dir=DIR_WITH_PREPARED_CIFAR10
           python -m jaxgan.evaluate --workdir=runs/sngan --inception_weights=pt_inception.pth
"""

from jaxgan.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "cifar10"
    config.model.name = "sngan32"
    config.loss = "hinge"
    config.d_steps = 5
    config.batch_size = 64
    config.num_steps = 100_000
    config.g_lr = config.d_lr = 2e-4
    config.optimizer.b1 = 0.0
    config.optimizer.b2 = 0.9
    config.optimizer.linear_decay_steps = config.num_steps
    config.log_every = 100
    config.eval_every = 5_000
    config.ckpt_every = 5_000
    return config
