"""PacGAN's ring of 8 Gaussians (σ 0.01 on the unit circle) with the toy2d networks.

Command:   python train.py --config=jaxgan/configs/ring8.py --workdir=runs/ring8
Run time:  about 3 minutes on a 2-core CPU.
Expected:  modes captured / % high quality / reverse KL beside PacGAN Table 1
           (GAN 6.3 / 98.2 % / 0.45; PacGAN2 7.9 / 95.6 % / 0.07).
"""

from jaxgan.configs import grid25


def get_config():
    config = grid25.get_config()
    config.data.name = "ring8"
    return config
