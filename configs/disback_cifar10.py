"""DisBack one-step distillation of an EDM DDPM++ teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10 --workdir checkpoints/edm_cifar10
    python -m genmod.launch --config disback_cifar10          # teacher from the workdir above
    python -m genmod.launch --config disback_cifar10:smoke    # seconds, tiny U-Net, untrained teacher

Stage 'record': s' (a teacher copy) trained by EDM-weighted DSM on samples of G0 (the
teacher-initialised generator, frozen), N = 10 path checkpoints 100 steps apart (the
official SDXL degradation run: 1000 steps, a checkpoint every 100). Stage 'backtrack': G
from G0 with the Diff-Instruct / VSD gradient (the paper's base for EDM teachers), fake
score from s'_N, targets 9, 8, ..., 1 for 1000 steps each (the SDXL run's --interval 1000),
then the teacher to the end; Diff-Instruct's 1:1 alternation, generator input sigma 80.
Known from the paper: the method and the base. Unknown [unverified]: every CIFAR-10
hyperparameter below (batch 256, Adam lr 1e-5 with betas (0, 0.999) for both nets, no GAN, 100k backtracking
steps are placeholders), and the paper's CIFAR-10 teacher is a DDPM (Diff-Pruning
checkpoint), not the EDM teacher used here. Published CIFAR-10 FID: not stated in the
material we have [unverified]; the paper claims faster convergence than Diff-Instruct alone.
Data: ``cifar10``, the official archive fetched into the cache on first use and hash-checked
(``cifar10:PATH/cifar-10-python.tar.gz`` for a copy of your own, ``tfds:cifar10``; README, Data).
"""
from genmod import config_lib
from genmod.methods import disback, dmd2
from genmod.nets import unet


def smoke(c):
    disback.smoke(config_lib.smoke32(c))


def get_config(arg=None):
    c = config_lib.base()
    disback.vsd_image(c, "checkpoints/edm_cifar10")
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ddpmpp_cifar10()))
    c.optim = dmd2.optim(lr=1e-5, weight_decay=0.0, clip=0.0, b1=0.0)
    c.batch_size = 256
    c.total_steps = 10 * 100 + 100_000
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 500_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
