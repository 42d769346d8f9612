"""DMD2 one-step distillation of a class-conditional EDM DDPM++ teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10 --config.data.num_classes=10 --workdir checkpoints/edm_cifar10_cond
    python -m genmod.launch --config dmd2_cifar10            # teacher from the workdir above
    python -m genmod.launch --config dmd2_cifar10:smoke      # seconds, tiny U-Net, untrained teacher

DMD2 published no CIFAR-10 recipe; these are FastGen's DMD2 CIFAR-10 (cond) settings as
reported in ../shared/reference/methods.md: batch 2048, AdamW lr 1e-4 (default; betas
0.9/0.999, wd 0.01), clip 10, TTUR 5, GAN weights 1e-3 (generator) / 1e-2 (critic),
diffusion-GAN levels U{0..999}, DM levels U{20..980}, no CFG, generator EMA 0.9999 per
update. 100k iterations counted as DMD2 does (critic steps) = 120k genmod steps (100k critic
+ 20k generator updates) [the FastGen iteration count convention is unverified].
Generator and critic start as copies of the teacher (same config.net); the teacher is
read-only and never saved with the student.
Expected FID (50k samples, 1 step): 2.13 (DMD2 / reverse-KL re-run in the f-distill paper,
recall 0.60); FastGen's re-implementation reports 1.99. The EDM cond teacher: 1.79 (35 NFE).
Not reproduced here [unverified]; genmod's EDM teacher lacks EDM's augmentation pipeline.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import dmd2
from genmod.nets import unet


def smoke(c):
    dmd2.smoke(config_lib.smoke32(c))


def get_config(arg=None):
    c = config_lib.base()
    c.method = "dmd2"
    c.dmd2 = dmd2.defaults()
    c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight, c.dmd2.ttur = 1e-3, 1e-2, 5
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_cifar10_cond", step=0))
    c.data.source, c.data.shape, c.data.num_classes, c.data.flip = "cifar10", (32, 32, 3), 10, True
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ddpmpp_cifar10()))
    c.optim = dmd2.optim(lr=1e-4, weight_decay=0.01, clip=10.0)
    c.total_steps, c.batch_size = 120_000, 2048
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 2048 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
