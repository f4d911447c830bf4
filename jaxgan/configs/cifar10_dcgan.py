"""dcgan32 (Radford et al. 2015, one block fewer) on CIFAR-10 from tfds.

Command:   python train.py --config=jaxgan/configs/cifar10_dcgan.py --workdir=runs/cifar10 \
               --config.data.data_dir=DIR_WITH_PREPARED_CIFAR10
           (preparing cifar10 needs TensorFlow and a download; see README.md)
Run time:  hours on a 2-core CPU; about a minute per 1,000 iterations on one GPU.
Expected:  blurry but varied natural-image samples after ~10,000 iterations.
"""

from jaxgan.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "cifar10"
    config.model.name = "dcgan32"
    config.batch_size = 64
    config.num_steps = 50_000
    config.g_lr = config.d_lr = 2e-4
    config.optimizer.b1 = 0.5
    config.log_every = 100
    config.eval_every = 2_000
    config.ckpt_every = 2_000
    return config
