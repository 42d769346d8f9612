"""iCT (Song & Dhariwal 2023) on CIFAR-10 with NCSN++: the `cm_cifar10` default.

    python -m genmod.launch --config cm_cifar10
    python -m genmod.launch --config cm_cifar10:smoke        # seconds, on any CPU
    python -m genmod.launch --config cm_cifar10:deep         # iCT-deep (2x NCSN++ depth)

Hardware: the paper trained with batch 1024 for 400k iterations on a large GPU cluster
(order of 8 A100-class nodes for days); expect ~1 week on 8xH100.
Published FID (50k, CIFAR-10 train stats): iCT 2.83 (1 step) / 2.46 (2 steps);
iCT-deep 2.51 / 2.24.
Settings: NCSN++ (128 ch, mult 2,2,2, 4 blocks, attn 16, Fourier embedding, FIR [1,3,3,1],
residual encoder, skip rescale), dropout 0.3, RAdam lr 1e-4 (no decay, no warm-up),
batch 1024, K = 400k, curriculum N = 11 ... 1281 (s0 10, s1 1280, K' = 50k), lognormal
index pmf (-1.1, 2.0), pseudo-Huber c = 0.00054 sqrt(3072) = 0.0299, weight 1/dsigma,
sampling EMA 0.99993 per step (half-life 10.1 Mimg at batch 1024), 2-step sigma_mid 0.821.
[unverified] from secondary sources: dropout 0.3, Fourier scale reduced from 16 to 0.02,
sigma_mid = 0.821. Data: ``cifar10`` with random flips, the official archive fetched into the
cache on first use and hash-checked (``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your
own, ``tfds:cifar10``; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import cm
from genmod.nets import unet


def deep(c):
    c.net.num_blocks = 8  # iCT-deep: twice the NCSN++ depth (>100M params)


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.sample.nfe = 1
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    c.net = config_lib.ConfigDict(dict(arch="unet", **{**unet.ncsnpp_cifar10(), "dropout": 0.3, "fourier_scale": 0.02}))
    c.total_steps, c.batch_size = 400_000, 1024
    c.optim.net.name, c.optim.net.lr = "radam", 1e-4
    c.ema.halflife_img = 1024 * math.log(0.5) / math.log(0.99993)
    c.ema.rampup = 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke32, "deep": deep})
