"""EDM on CIFAR-10 (Karras et al. 2022), DDPM++ ("VP") unconditional, paper settings.

    python -m genmod.launch --config edm_cifar10
    python -m genmod.launch --config edm_cifar10:smoke       # seconds, on any CPU
    python -m genmod.launch --config edm_cifar10:ncsnpp --workdir checkpoints/edm_cifar10_ncsnpp

Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``); offline
here, ``--config.data.source=npz:../shared/data/cifar10_batch1.npz`` for the first 10k images.
Settings: DDPM++ 55.7M params, batch 512, Adam lr 1e-3 (β 0.9/0.999, ε 1e-8) with a 10 Mimg
linear warm-up, 200 Mimg (390,625 steps), dropout 0.13, lognormal σ (P_mean -1.2, P_std 1.2),
EMA half-life 0.5 Mimg (ramp-up 0.05), Heun-18 = 35 NFE. Hardware: ~2 days on 8xV100.
Published FID 1.97 (uncond, 35 NFE) uses EDM's non-leaky augmentation (p=0.12), which
genmod does not implement yet: without it expect a somewhat worse FID (EDM's ablation
reports the augmentation mainly prevents overfitting on long runs).
"""
from genmod import config_lib
from genmod.methods import edm
from genmod.nets import unet


def ncsnpp(c):
    """EDM's "VE" architecture (NCSN++, 56.4M): the teacher that cd_cifar10 distills."""
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ncsnpp_cifar10()))


def get_config(arg=None):
    c = config_lib.base()
    c.method = "edm"
    c.edm = edm.defaults()
    config_lib.edm_cifar10_recipe(c)
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke32, "ncsnpp": ncsnpp})
