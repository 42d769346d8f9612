"""EDM on CIFAR-10 (Karras et al. 2022), DDPM++ ("VP") unconditional, paper settings.

    python -m genmod.launch --config edm_cifar10
    python -m genmod.launch --config edm_cifar10:smoke       # seconds, on any CPU
    python -m genmod.launch --config edm_cifar10:ncsnpp --workdir checkpoints/edm_cifar10_ncsnpp

Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``); offline
here, ``--config.data.source=npz:../shared/data/cifar10_batch1.npz`` for the first 10k images.
Settings: DDPM++ 55.7M params, batch 512, Adam lr 1e-3 (β 0.9/0.999, ε 1e-8) with a 10 Mimg
linear warm-up, 200 Mimg (390,625 steps), dropout 0.13, lognormal σ (P_mean -1.2, P_std 1.2),
EMA half-life 0.5 Mimg (ramp-up 0.05), Heun-18 = 35 NFE, and EDM's non-leaky augmentation
(``genmod.augment``): p = 0.12 of x/y-flip, scale, rotation, anisotropic scale and translation,
their 9 labels fed to the network (augment_dim 9, zero when sampling); NVlabs/edm train.py's
defaults ``--augment=0.12 --dropout=0.13``. Hardware: ~2 days on 8xV100.
Published FID: 1.97 uncond / 1.79 cond (35 NFE).
"""
from genmod import config_lib
from genmod.methods import edm
from genmod.nets import unet


def ncsnpp(c):
    """EDM's "VE" architecture (NCSN++, 56.4M): the teacher that cd_cifar10 distills. No
    augmentation: CM's NCSN++ student (a copy of this teacher) has no augment-label input; add
    ``--config.edm.augment_p=0.12 --config.net.augment_dim=9`` for EDM's own VE run."""
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ncsnpp_cifar10(), augment_dim=0))
    c.edm.augment_p = 0.0


def get_config(arg=None):
    c = config_lib.base()
    c.method = "edm"
    c.edm = edm.defaults()
    config_lib.edm_cifar10_recipe(c)
    c.edm.augment_p, c.net.augment_dim = 0.12, 9  # train.py --augment=0.12: AugmentPipe p, augment_dim 9
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke32, "ncsnpp": ncsnpp})
