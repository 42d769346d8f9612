"""CDRL (Zhu et al., ICLR 2024) on CIFAR-10 with the official settings (``main_uncond.py``).

    python -m genmod.launch --config cdrl_cifar10
    python -m genmod.launch --config cdrl_cifar10:smoke      # seconds, on any CPU
    python -m genmod.launch --config cdrl_cifar10:large      # CDRL-large (EBM channels x2)

Published FID (CIFAR-10, 50k samples, 6 levels x 15 Langevin steps + Tweedie): 4.31,
CDRL-large 3.68 (DRL: 9.58). With fewer steps per level (sampling ``--nfe``; whether the paper
also trained with fewer steps is [unverified]): 8 -> 4.58, 5 -> 5.37, 3 -> 9.67.
Not reproduced here [unverified]: the paper trained 500k iterations at batch 256 (8 GPUs x 32);
each step costs 15 EBM forward+backward passes in the chain, 2 with parameter gradients and one
U-Net pass, so expect several GPU-days.
Settings: T = 6 levels on the cosine log-SNR schedule in [-5.1, 9.8], K = 15, step^2
4e-4 c_t sig2_t with c_t = sqrt(1 - abar_{t-1}) / sqrt(1 - abar_0), loss weight sigma_1 / sigma_t,
shared-noise pairs, initializer noise = DDPM posterior ("small") variance, Tweedie step with the
code's 2e-4 constant (``cdrl.tweedie = 2``). EBM ('ebm', the code's ``pi``): ResNet 128 ch x
(1, 2, 2, 2), 8 blocks per resolution, spectral norm, leaky-ReLU 0.2; Adam lr 1e-4 (10k-step
warm-up), clip 1. Initializer ('init', the code's ``p``): DDPM-style U-Net, 64 ch x (1, 1, 1),
3 blocks, attention at 16 and 8, dropout 0.1, residual output; AdamW lr 1e-5 (wd 0), clip 1, its
warm-up offset by +500 steps in the code (here: 9.5k steps from 0, reaching 1e-5 at the same
step). EMA 0.9999 per step on both (no ramp-up). Random horizontal flips. Here the U-Net is our
SongUNet (DDPM++ blocks with those sizes), not a line-by-line port of ``models/unet.py``.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import cdrl

ADAM = dict(name="adam", b1=0.9, b2=0.999, eps=1e-8, warmup_img=0, weight_decay=0.0, clip=1.0)


def large(c):
    c.ebm_net.ch = 256  # CDRL-large: twice the EBM channels


def smoke(c):
    config_lib.smoke(c, data_source="synthetic:32x32x3")
    c.ebm_net = config_lib.ConfigDict(dict(arch="genmod.nets.ebm:energy", ch=8, ch_mult=(1, 2), num_blocks=1,
                                           spectral_norm=True))
    c.init_net = config_lib.ConfigDict(dict(config_lib.TINY_UNET, dropout=0.1))
    c.cdrl.langevin_steps = 2


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cdrl"
    c.cdrl = cdrl.defaults()
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    del c.net
    c.ebm_net = config_lib.ConfigDict(dict(arch="genmod.nets.ebm:energy", ch=128, ch_mult=(1, 2, 2, 2), num_blocks=8,
                                           spectral_norm=True))
    c.init_net = config_lib.ConfigDict(dict(arch="unet", model_channels=64, channel_mult=(1, 1, 1), num_blocks=3,
                                            attn_resolutions=(16, 8), dropout=0.1))
    c.optim = config_lib.ConfigDict(dict(ebm={**ADAM, "lr": 1e-4, "warmup_steps": 10_000},
                                         init={**ADAM, "lr": 1e-5, "warmup_steps": 9_500}))
    c.total_steps, c.batch_size = 500_000, 256
    c.ema.halflife_img, c.ema.rampup = c.batch_size * math.log(0.5) / math.log(0.9999), 0.0
    c.sample.nfe = c.cdrl.langevin_steps  # Langevin steps per level when sampling
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 10_000, 10_000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "large": large})
