"""f-distill (forward KL) one-step distillation of a class-conditional EDM teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10 --config.data.num_classes=10 --workdir checkpoints/edm_cifar10_cond
    python -m genmod.launch --config fdistill_cifar10        # teacher from the workdir above
    python -m genmod.launch --config fdistill_cifar10:smoke  # seconds, tiny U-Net, untrained teacher

``dmd2_cifar10`` plus the f-distill weighting, with the paper's best CIFAR-10 divergence:
forward-KL (h(r) = r), ratio clip [0.1, 20], logit clamp 10, 10 sigma-bins with ratio_ema 0
(this batch's bin means), batch 2048, GAN weight 1e-3, 100k FastGen iterations = 20k generator
+ 80k critic updates (ttur 4; NVlabs/FastGen fastgen/configs/experiments/EDM/
config_f_distill_cifar10.py, counted as in ``dmd2_cifar10``), discriminator on the fake
score's bottleneck (DMD2's, the paper's option (1); FastGen reads the teacher's features instead).
Expected FID (50k, 1 step): 1.92 (recall 0.62) in the paper; FastGen reproduces 1.85.
Other divergences (paper, CIFAR-10): JS 2.00, squared Hellinger 1.99, Jeffreys 2.05,
softened RKL 2.21, reverse-KL 2.13. Not reproduced here.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
from genmod import config_lib
from genmod.methods import dmd2, fdistill


def smoke(c):
    dmd2.smoke(config_lib.smoke32(c))


def get_config(arg=None):
    c = config_lib.load("dmd2_cifar10")
    with c.unlocked():
        c.method = "fdistill"
        c.fdistill = fdistill.defaults()
        c.fdistill.f, c.fdistill.ratio_ema = "kl", 0.0
        c = config_lib.apply_presets(c, arg, {"smoke": smoke})
    return c
