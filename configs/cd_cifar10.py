"""Consistency distillation (Song et al. 2023) of an EDM NCSN++ teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10:ncsnpp --workdir checkpoints/edm_cifar10_ncsnpp
    python -m genmod.launch --config cd_cifar10             # teacher from the workdir above
    python -m genmod.launch --config cd_cifar10:smoke       # seconds, untrained teacher

Settings of the CM JAX code (configs/cifar10_ve_cd.py): NCSN++ student initialised from the
teacher, dropout 0, batch 512, 800k iterations, N = 18 Karras grid, one Heun teacher step,
target EMA mu = 0 (theta^- = stopgrad theta), LPIPS metric (VGG, both images resized
bilinearly to 224 first), RAdam lr 4e-4 (2e-4 with l1), no clipping, sampling EMA 0.9999 per
step (half-life 3.55 Mimg at batch 512). No warm-up: the config asks for 10 Mimg, but the
RAdam branch of the official get_optimizer (jcm/losses.py) is scale_by_radam -> scale(-lr) and
never reads optim.warmup (only its Adam branch builds the schedule).
Published FID: 3.55 (1 step) / 2.93 (2 steps) with LPIPS. Hardware: 8xA100 for several days.
LPIPS weights (genmod/lpips.py): ``--config.cm.lpips_weights=PATH.npz`` (python -m genmod.lpips),
else torchvision's VGG-16 and lpips's heads fetched into the cache on first use and converted
there (needs torch). If they can be neither read nor fetched the run stops with one error
line (no silent fall-back to l2: that would be another experiment); ``--config.cm.metric=l2``
runs without them. ``:smoke`` uses l2.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import cm
from genmod.nets import unet


def smoke(c):
    config_lib.smoke32(c)
    c.teacher.workdir, c.cm.metric = "init", "l2"


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.cm.mode, c.cm.metric, c.cm.target_mu, c.cm.cd_N = "cd", "lpips", 0.0, 18
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_cifar10_ncsnpp", step=0))
    c.sample.nfe = 1
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    c.net = config_lib.ConfigDict(dict(arch="unet", **{**unet.ncsnpp_cifar10(), "dropout": 0.0}))
    c.total_steps, c.batch_size = 800_000, 512
    c.optim.net.name, c.optim.net.lr, c.optim.net.warmup_img = "radam", 4e-4, 0  # no warm-up: see above
    c.ema.halflife_img, c.ema.rampup = 512 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
