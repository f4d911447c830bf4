"""Every field of a jaxgan run, with its default. Presets import this and change a few.

Not a preset itself: ``grid25.py`` is what ``python train.py`` runs with no argument.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # the whole run is a function of the config; the seed picks the randomness
    config.num_seeds = 1  # train seeds seed, seed+1, ... together (vmap); metrics get mean ± s.e.

    # ---- data
    config.data = ml_collections.ConfigDict()
    # ring8 | grid25 (embedded); mnist | fashion_mnist | any tfds image dataset, as NAME[:VERSION]
    config.data.name = "grid25"
    config.data.idx_dir = ""  # folder of the four MNIST-format IDX .gz files (offline, no TF)
    config.data.data_dir = ""  # tfds data_dir holding the prepared dataset ("" = tfds' default)
    config.data.split = "train"
    # Images: 0 keeps them as stored; S center-crops each to a square and resizes it to SxS
    # (bilinear, as DCGAN's celeb_a at 64: --config.data.image_size=64).
    config.data.image_size = 0
    # auto | device | grain. device: the dataset on every device, batches drawn there; grain:
    # batches read on the host through Grain, for data larger than device memory (the same
    # batches, bit for bit). auto: device when the data fit in the budget, else grain.
    config.data.loader = "auto"
    config.data.memory_budget_bytes = 0  # the budget of auto (0: half the device's memory)

    # ---- model (docs/MODELS.md)
    config.model = ml_collections.ConfigDict()
    config.model.name = "toy2d"  # toy2d | mlp | dcgan28 | dcgan32 | dcgan64
    # Convolutions: auto (what was measured fastest on this platform: fast on the CPUs
    # measured, lax on GPU and TPU; printed, and recorded in config.json) | fast (the
    # CPU-tuned kernels of jaxgan/conv.py, with custom JVPs) | lax (plain lax convolutions
    # and JAX's own derivatives). Same parameters and, up to float rounding, outputs.
    config.model.conv = "auto"
    # dcgan32/dcgan64 D's normalisation: batch (Radford et al.) | layer | none. Penalties
    # (gp_weight, r1_gamma, r2_gamma) need a D without BatchNorm: layer, as WGAN-GP's critic.
    config.model.d_norm = "batch"
    # Class-conditional GANs (labels from the data): none | projection (Miyato & Koyama 2018:
    # G with class-conditional BatchNorm, a projection D) | acgan (Odena et al. 2017: D with
    # an auxiliary classifier, weighted by acgan_weight).
    config.model.conditioning = "none"
    # Spectral normalization (Miyato et al. 2018): default (the family's own: on in the
    # SN-ResNets' D, off elsewhere) | none | d | g_and_d. Its u and σ are checkpointed.
    config.model.spectral_norm = "default"
    config.model.attention = 0  # resolution of a SAGAN self-attention block (0 = none)

    # ---- objective and update schedule
    config.loss = "non_saturating"  # minimax | non_saturating | wasserstein | hinge | least_squares
    config.d_steps = 1  # k: discriminator updates per generator update
    config.pack = 1  # PacGAN: D judges packs of m samples together (1 = no packing)
    config.fresh_g_noise = True  # new noise for the G update (Algorithm 1); False reuses D's
    config.gp_weight = 0.0  # WGAN-GP λ (0 = off)
    config.r1_gamma = 0.0  # R1 γ (0 = off): adds γ/2 · E‖∇D‖² at real data
    config.r2_gamma = 0.0  # R2 γ (0 = off): the same at generated data
    # What a penalty's gradient norm is taken over: pack (the papers: with PacGAN packing m,
    # D's input is the pack, so R1/R2 are per pack and WGAN-GP draws one ε per pack) |
    # sample (jaxgan <= 0.2: per sample, so R1/R2 were γ/m in the papers' terms).
    config.penalty_per = "pack"
    config.ema_decay = 0.999  # EMA of G's parameters, used for samples and evaluation
    # The EMA's decay at iteration t is min(ema_decay, (1 + t) / (10 + t)): early samples show
    # G, not the EMA's memory of its initialisation (False: ema_decay throughout, jaxgan <= 0.2).
    config.ema_warmup = True
    # DiffAugment (Zhao et al. 2020) in every D evaluation: "" (off) or a comma-separated
    # policy of color, translation, cutout (e.g. "color,translation,cutout").
    config.augment = ""
    config.acgan_weight = 1.0  # weight of ACGAN's class loss (model.conditioning=acgan)

    # ---- optimization
    config.batch_size = 100  # m: examples per minibatch (each of the k D updates gets its own)
    config.num_steps = 20_000  # training iterations (k D updates + 1 G update each)
    config.g_lr = 1e-4
    config.d_lr = 1e-4
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # adam | sgd
    config.optimizer.b1 = 0.5  # adam
    config.optimizer.b2 = 0.999  # adam
    config.optimizer.eps = 1e-8  # adam
    config.optimizer.momentum = 0.0  # sgd
    config.optimizer.final_momentum = 0.0  # sgd: momentum ramps linearly to this ...
    config.optimizer.momentum_ramp_steps = 0  # ... over this many iterations (0 = constant)
    config.optimizer.lr_decay = 1.0  # learning rate multiplied by this after each iteration
    config.optimizer.linear_decay_steps = 0  # or: it falls linearly to 0 over this many (0 = off)
    # What lr_decay and the momentum ramp count: iteration (training iterations, for G and
    # D alike) | update (optimizer updates: D's schedule runs d_steps times faster; jaxgan
    # <= 0.2).
    config.optimizer.schedule_per = "iteration"

    # ---- speed
    # Iterations fused into one compiled call (lax.scan): helps small MLPs, but on CPU
    # XLA runs convolution gradients inside loops far slower, so keep 1 for the DCGANs.
    config.steps_per_dispatch = 1
    config.scan_d_steps = False  # the k D updates as a lax.scan instead of unrolled
    # bfloat16: both networks compute in bf16 (fast on GPU/TPU); parameters, optimizer
    # states, BatchNorm statistics and losses stay float32.
    config.compute_dtype = "float32"

    # ---- health
    config.max_consecutive_skips = 20  # stop after this many non-finite updates in a row

    # ---- logging, evaluation, checkpoints (changing these does not change the results)
    config.log_every = 100  # metrics.jsonl, TensorBoard and the progress bar
    config.eval_every = 2_000  # sample pictures (and mode coverage on 2-D data)
    config.ckpt_every = 2_000
    config.keep_checkpoints = 3  # orbax keeps this many newest checkpoints
    config.num_eval_samples = 2_500  # samples for mode coverage (PacGAN protocol)
    # Image data: classifier FID/KID/score (MNIST, Fashion-MNIST; Stacked MNIST modes) every
    # eval_every steps. The first use trains and caches the feature classifier (~80 s on CPU).
    config.eval_metrics = False
    config.eval_parzen = False  # MNIST Parzen log-likelihood too (a few seconds more)
    return config
