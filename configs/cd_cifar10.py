"""Consistency distillation (Song et al. 2023) of an EDM NCSN++ teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10:ncsnpp --workdir checkpoints/edm_cifar10_ncsnpp
    python -m genmod.launch --config cd_cifar10             # teacher from the workdir above
    python -m genmod.launch --config cd_cifar10:smoke       # seconds, untrained teacher

Settings of the CM JAX code (configs/cifar10_ve_cd.py): NCSN++ student initialised from the
teacher, dropout 0, batch 512, 800k iterations, N = 18 Karras grid, one Heun teacher step,
target EMA mu = 0 (theta^- = stopgrad theta), RAdam lr 4e-4 (2e-4 with l1) with a 10 Mimg
warm-up, no clipping, sampling EMA 0.9999 per step (half-life 3.55 Mimg at batch 512).
Published FID: 3.55 (1 step) / 2.93 (2 steps) with the LPIPS metric; genmod ships l2 and l1
(LPIPS needs ImageNet VGG weights that cannot be downloaded here), which the CM paper
reports as clearly worse than LPIPS. Hardware: 8xA100 for several days.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import cm
from genmod.nets import unet


def smoke(c):
    config_lib.smoke32(c)
    c.teacher.workdir = "init"


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.cm.mode, c.cm.metric, c.cm.target_mu, c.cm.cd_N = "cd", "l2", 0.0, 18
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_cifar10_ncsnpp", step=0))
    c.sample.nfe = 1
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    c.net = config_lib.ConfigDict(dict(arch="unet", **{**unet.ncsnpp_cifar10(), "dropout": 0.0}))
    c.total_steps, c.batch_size = 800_000, 512
    c.optim.net.name, c.optim.net.lr, c.optim.net.warmup_img = "radam", 4e-4, 10_000_000
    c.ema.halflife_img, c.ema.rampup = 512 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
