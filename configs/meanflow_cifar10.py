"""MeanFlow (Geng et al. 2025) on unconditional CIFAR-10 with EDM's DDPM++ U-Net, 1-NFE.

    python -m genmod.launch --config meanflow_cifar10
    python -m genmod.launch --config meanflow_cifar10:smoke    # seconds, on any CPU

Published FID (50k, 1-NFE): 2.92 (paper, Table 3); ~2.8-2.9 with the official PyTorch code's
improved ``v1`` sampler (``:v1``). Settings of the official CIFAR-10 code (Gsunshine/py-meanflow,
scripts/cifar10_v0.sh, "the original configuration used in the paper"): DDPM++ U-Net
(128 ch, mult 2,2,2, 4 blocks, attention at 16, positional embedding, channel_mult_noise 2,
resample filter [1,3,3,1]), dropout 0.2, batch 1024, Adam lr 6e-4 (0.9, 0.999) with a
200-epoch (~9.8k step) linear warm-up, 16,000 epochs (~800k steps), EMA 0.9999 per step;
(t, r) both lognorm(-2.0, 2.0) sorted, 75% r != t, adaptive weight p = 0.75, c = 1e-3; EDM
augmentation. Deviations: the official U-Net concatenates emb(t) and emb(h) before its first
mapping layer, here h enters through the label input (genmod/methods/meanflow.py); augmentation
is genmod's EDM pipe (p 0.12 with y-flip and rotation, 9 labels), where the official code uses
6 labels without y-flip and rotation. Hardware: 0.21 s/step on 8xH200 (official, v1).
"""
import math

from genmod import config_lib
from genmod.methods import meanflow
from genmod.nets import unet


def v1(c):
    """The official code's improved sampler (scripts/cifar10_v1.sh): t ~ lognorm(-0.6, 1.6),
    r = min(t, r'), r' ~ lognorm(-4.0, 1.6)."""
    m = c.meanflow
    m.tr_sampler, m.P_mean_t, m.P_std_t, m.P_mean_r, m.P_std_r = "v1", -0.6, 1.6, -4.0, 1.6


def get_config(arg=None):
    c = config_lib.base()
    c.method = "meanflow"
    c.meanflow = meanflow.defaults()
    m = c.meanflow
    m.P_mean_t, m.P_std_t, m.P_mean_r, m.P_std_r = -2.0, 2.0, -2.0, 2.0
    m.ratio, m.norm_p, m.norm_eps, m.augment_p = 0.75, 0.75, 1e-3, 0.12
    c.sample.nfe = 1
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), False
    c.net = config_lib.ConfigDict(dict(arch="unet", **{**unet.ddpmpp_cifar10(), "dropout": 0.2, "channel_mult_noise": 2,
                                                        "resample_filter": (1, 3, 3, 1)}, augment_dim=9))
    c.total_steps, c.batch_size = 800_000, 1024
    c.optim.net.lr, c.optim.net.warmup_img = 6e-4, 200 * 50_000
    c.ema.halflife_img, c.ema.rampup = 1024 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke32, "v1": v1})
