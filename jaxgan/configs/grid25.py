"""The default: PacGAN's 2-D grid of 25 Gaussians with the toy2d networks.

Command:   python train.py   (same as --config=jaxgan/configs/grid25.py)
Run time:  about 1.5 minutes on a 2-core CPU (10,000 steps, one seed); --config.num_seeds=10
           trains ten seeds in one program, about 10x the compute.
Expected:  the final line reports modes captured, % high-quality samples and reverse KL
           (docs/EVALUATION.md) beside PacGAN's Table 1. Measured with 10 seeds (docs/RESULTS.md):
           25.0 ± 0.0 modes in every seed, 48.5 ± 2.4 % high quality, KL 0.35 ± 0.03; MH
           after refining D (python -m jaxgan.evaluate --method=mh --refine_d_steps=6000):
           97.8 ± 0.2 % high quality, KL 0.045.

The recipe (tuned, docs/RESULTS.md): PacGAN's networks and batch 100, but Adam 1e-3 with
β1 0.5 decaying 10x over the run, and R1 (γ 0.1) on D. PacGAN's own recipe (Adam 1e-4,
β1 0.8) needs its 400,000 iterations: at 2,000 steps it still has 1-2 modes.
"""

from jaxgan.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "grid25"
    config.model.name = "toy2d"
    config.batch_size = 100
    config.num_steps = 10_000
    config.g_lr = config.d_lr = 1e-3
    config.optimizer.b1 = 0.5
    config.optimizer.lr_decay = 0.99977  # 0.99977 ** 10_000 ≈ 0.1
    config.r1_gamma = 0.1
    # Measured runs sample G itself. (An EMA now gets BatchNorm statistics of its own and
    # scored the same as G in 5,000-step runs; the runs of docs/RESULTS.md predate that.)
    config.ema_decay = 0.0
    config.eval_every = 2_500
    config.ckpt_every = 2_500
    return config
