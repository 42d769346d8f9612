"""Original consistency training (Song et al. 2023, "CT adaptive") on CIFAR-10.

    python -m genmod.launch --config ct_cifar10
    python -m genmod.launch --config ct_cifar10:smoke        # seconds, on any CPU

Settings of the CM JAX code (configs/cifar10_ve_ct_adaptive.py): NCSN++ from scratch,
batch 512, 800k iterations, data target x + t_{i+1} z (same z), adaptive N(k) (s0 2, s1 150)
and target EMA mu(k) = exp(s0 ln 0.9 / N(k)), RAdam lr 4e-4 with a 10 Mimg warm-up, sampling
EMA 0.9999 per step. Published FID 8.70 (1 step) / 5.83 (2 steps) [unverified] with LPIPS;
genmod ships l2/l1 (see cd_cifar10). Hardware: 8xA100 for several days.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import cm
from genmod.nets import unet


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.cm.mode, c.cm.metric = "ct", "l2"
    c.sample.nfe = 1
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    c.net = config_lib.ConfigDict(dict(arch="unet", **{**unet.ncsnpp_cifar10(), "dropout": 0.0}))
    c.total_steps, c.batch_size = 800_000, 512
    c.optim.net.name, c.optim.net.lr, c.optim.net.warmup_img = "radam", 4e-4, 10_000_000
    c.ema.halflife_img, c.ema.rampup = 512 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke32})
