"""DMD2 one-step distillation of a class-conditional EDM DDPM++ teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10 --config.data.num_classes=10 --workdir checkpoints/edm_cifar10_cond
    python -m genmod.launch --config dmd2_cifar10            # teacher from the workdir above
    python -m genmod.launch --config dmd2_cifar10:smoke      # seconds, tiny U-Net, untrained teacher

DMD2 published no CIFAR-10 recipe; these are NVlabs/FastGen's DMD2 CIFAR-10 (cond) settings
(fastgen/configs/experiments/EDM/config_dmd2_cifar10.py over configs/methods/config_dmd2.py):
batch 2048, AdamW lr 1e-4 (default; betas 0.9/0.999, wd 0.01), clip 10, GAN weight 1e-3
(generator; the critic's 1e-2 is DMD2's: FastGen's discriminator has its own optimizer),
diffusion-GAN levels U{0..999}, DM levels U{20..980}, no CFG.
Iterations: FastGen's trainer runs max_iter = 100k iterations, each ONE update, of the
student when ``iteration % student_update_freq (5) == 0`` and of the critic otherwise
(methods/distribution_matching/dmd2.py): 20k generator + 80k critic updates = genmod
``ttur`` 4, 100k steps. Its EMA (beta 0.9999) steps every iteration, critic ones included:
0.9999^5 per generator update here. The student is EDM's CIFAR-10 network with augment_dim 9
(fastgen/configs/net.py; zero labels), as is the teacher edm_cifar10 trains.
Generator and critic start as copies of the teacher (same config.net); the teacher is
read-only and never saved with the student.
Expected FID (50k samples, 1 step): 2.13 (DMD2 / reverse-KL re-run in the f-distill paper,
recall 0.60); FastGen's re-implementation reports 1.99. The EDM cond teacher: 1.79 (35 NFE).
Not reproduced here.
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
    c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight, c.dmd2.ttur = 1e-3, 1e-2, 4
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_cifar10_cond", step=0))
    c.data.source, c.data.shape, c.data.num_classes, c.data.flip = "cifar10", (32, 32, 3), 10, True
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ddpmpp_cifar10(), augment_dim=9))
    c.optim = dmd2.optim(lr=1e-4, weight_decay=0.01, clip=10.0)
    c.total_steps, c.batch_size = 100_000, 2048
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 2048 * math.log(0.5) / (5 * math.log(0.9999)), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
