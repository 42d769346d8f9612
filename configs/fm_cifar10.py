"""Rectified flow matching on CIFAR-10 with EDM's DDPM++ backbone and training budget.

    python -m genmod.launch --config fm_cifar10
    python -m genmod.launch --config fm_cifar10:smoke        # seconds, on any CPU

For a fair comparison with ``edm_cifar10`` this keeps everything but the objective: the
same DDPM++ (55.7M), batch 512, Adam lr 1e-3 with a 10 Mimg warm-up, 200 Mimg, dropout 0.13,
EMA half-life 0.5 Mimg. Linear path, logit-normal t (SD3), data at t=1; sampling with
Euler or Heun (``--config.fm.solver=heun``, 35 NFE). Published reference: 1-Rectified Flow
(Liu et al. 2023) reports FID 2.58 on CIFAR-10 with an adaptive RK45 solver (127 NFE), on
its own training recipe; expect higher FIDs with 35-NFE Euler. Hardware: ~2 days on 8xV100.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
from genmod import config_lib
from genmod.methods import fm


def get_config(arg=None):
    c = config_lib.base()
    c.method = "fm"
    c.fm = fm.defaults()
    config_lib.edm_cifar10_recipe(c)
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke32})
