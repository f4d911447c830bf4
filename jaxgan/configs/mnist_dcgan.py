"""The TensorFlow DCGAN tutorial network (dcgan28) on MNIST.

Command:   python train.py --config=jaxgan/configs/mnist_dcgan.py --workdir=runs/mnist_dcgan \
               --config.data.idx_dir=data/mnist
           (get data/mnist with `python -m jaxgan.data download mnist --dir=data/mnist`)
Run time:  about 0.15 s per iteration at batch 64 on a 2-core CPU (5,000 iterations ≈ 13 min;
           the first image-metric evaluation adds ~80 s to train the feature classifier);
           seconds on a GPU.
Expected:  clear digits in samples_*.png after ~3,000 iterations.
"""

from jaxgan.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "mnist"
    config.model.name = "dcgan28"
    config.batch_size = 64
    config.num_steps = 5_000
    config.g_lr = config.d_lr = 2e-4
    config.optimizer.b1 = 0.5
    config.log_every = 50
    config.eval_every = 500
    config.ckpt_every = 500
    config.eval_metrics = True  # classifier FID/KID/score every eval_every steps
    return config
