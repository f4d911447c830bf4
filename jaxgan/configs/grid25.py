"""The default: PacGAN's 2-D grid of 25 Gaussians with the toy2d networks.

Command:   python train.py   (same as --config=jaxgan/configs/grid25.py)
Run time:  about 3 minutes on a 2-core CPU.
Expected:  the final line reports modes captured, % high-quality samples and reverse KL
           (DESIGN.md §6) beside PacGAN's Table 1 (GAN 17.3 modes / 94.8 % / 0.70;
           PacGAN4 24.8 / 93.6 % / 0.04). See docs/RESULTS.md once measured.
"""

from jaxgan.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "grid25"
    config.model.name = "toy2d"
    config.batch_size = 100
    config.g_lr = config.d_lr = 1e-4
    config.optimizer.b1 = 0.8  # PacGAN's Adam β1
    return config
