"""Stacked MNIST with the R3GAN objective: the relativistic pairing loss + R1 + R2.

Huang et al. 2025 (R3GAN, arXiv 2501.05441) show that RpGAN (Jolicoeur-Martineau 2018)
regularised by R1 (at real data) and R2 (at generated data) converges locally and covers
every Stacked MNIST mode. Here on jaxgan's dcgan28 (3 channels; its D has no BatchNorm,
which the penalties need), PacGAN's data protocol (128,000 stacked images, batch 64,
Adam 2e-4; Lin et al. 2018) and Adam β (0, 0.99) as R3GAN.

Command:   python train.py --config=jaxgan/configs/stacked_mnist_r3gan.py \
               --workdir=runs/stacked_mnist_r3gan --config.data.idx_dir=data/mnist
           python -m jaxgan.evaluate --workdir=runs/stacked_mnist_r3gan
Published: PacGAN Table 2 (Lin et al. 2018): PacDCGAN2 1,000 modes, KL 0.06; DCGAN 99 / 3.4.
Measured:  2,000 iterations (47 min on a 2-core AMD EPYC, shared): 919 modes, KL 0.79;
           docs/RESULTS.md.
"""

from jaxgan.configs import stacked_mnist_dcgan


def get_config():
    config = stacked_mnist_dcgan.get_config()
    config.loss = "relativistic_pairing"
    config.r1_gamma = 0.1
    config.r2_gamma = 0.1
    config.optimizer.b1 = 0.0
    config.optimizer.b2 = 0.99
    config.num_steps = 10_000
    config.eval_every = 2_500
    config.ckpt_every = 2_500
    return config
