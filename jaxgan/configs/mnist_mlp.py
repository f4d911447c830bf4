"""Goodfellow et al. 2014 on MNIST: maxout/dropout D, ReLU/sigmoid G, SGD with momentum.

Command:   python train.py --config=jaxgan/configs/mnist_mlp.py --workdir=runs/mnist_mlp \
               --config.data.idx_dir=data/mnist
           (get data/mnist with `python -m jaxgan.data download mnist --dir=data/mnist`,
           or drop idx_dir to read tfds' prepared `mnist`)
Run time:  about 21 ms per iteration on a 2-core CPU: 50,000 iterations ≈ 17 minutes.
Expected:  recognisable digits in samples_*.png after ~10,000 iterations. Parzen
           log-likelihood (paper: 225 ± 2) comes with the evaluation tools.
"""

from jaxgan.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "mnist"
    config.model.name = "mlp"
    config.batch_size = 100
    config.num_steps = 50_000
    config.g_lr = config.d_lr = 0.1
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.5
    config.optimizer.final_momentum = 0.7
    config.optimizer.momentum_ramp_steps = 150_000  # 250 epochs of 600 updates
    config.optimizer.lr_decay = 1 / 1.000004
    config.ema_decay = 0.999
    config.log_every = 200
    config.eval_every = 2_500
    config.ckpt_every = 5_000
    config.eval_metrics = True  # classifier FID/KID/score every eval_every steps
    config.eval_parzen = True  # Goodfellow et al.'s Parzen estimate (Table 1: 225 ± 2)
    return config
