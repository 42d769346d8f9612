"""DisBack one-step distillation of an EDM DDPM++ teacher on CIFAR-10.

    python -m genmod.launch --config edm_cifar10 --workdir checkpoints/edm_cifar10
    python -m genmod.launch --config disback_cifar10          # teacher from the workdir above
    python -m genmod.launch --config disback_cifar10:smoke    # seconds, tiny U-Net, untrained teacher

Stage 'record': s' (a teacher copy) trained by EDM-weighted DSM on samples of G0 (the
teacher-initialised generator, frozen), N = 10 path checkpoints 100 steps apart (the
official SDXL degradation run: 1000 steps, a checkpoint every 100). Stage 'backtrack': G
from G0 with the Diff-Instruct / VSD gradient (the paper's base for EDM teachers), fake
score from s'_N, targets 9, 8, ..., 1 for 1000 steps each (the SDXL run's --interval 1000),
then the teacher to the end.
Base: Diff-Instruct's published CIFAR-10 run (pkulwj1994/diff_instruct: README command
``--batch 128 --lr 0.00001 --glr 0.00001 --init_sigma 1.0``, di_train.py, training/
di_training_loop.py, di_loss.py): batch 128, Adam lr 1e-5 with betas (0, 0.999) for both
nets, no warm-up, no clipping, 1:1 alternation (critic first), no GAN, generator
G(1.0 z, sigma=1.0) (not 80), lognormal sigma (-1.2, 1.2) for both losses, EMA half-life
0.5 Mimg (ramp-up 0.05), EDM's dropout 0.13 on in G's update, in the critic's DSM and in both
score evaluations of the generator loss (one shared mask: ``dmd2.dropout``); networks are
EDM's with augment_dim 9 (zero labels). Not reproduced: DI also runs EDM's augmentation
(p = 0.12) on the generated images of the critic's DSM, and sums its losses over pixels where
genmod averages (3,072x smaller gradients: Adam is invariant to that but for its eps 1e-8).
Unknown [unverified]: DisBack's own CIFAR-10 settings (the 100k backtracking steps are a
placeholder), and the paper's CIFAR-10 teacher is a DDPM (Diff-Pruning checkpoint), not
the EDM teacher used here. Published CIFAR-10 FID: not stated in the material we have
[unverified]; the paper claims faster convergence than Diff-Instruct alone.
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
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ddpmpp_cifar10(), augment_dim=9))
    c.optim = dmd2.optim(lr=1e-5, weight_decay=0.0, clip=0.0, b1=0.0)
    c.dmd2.gen_sigmas, c.dmd2.dropout = (1.0,), True  # Diff-Instruct's --init_sigma 1.0, train-mode nets
    c.batch_size = 128
    c.total_steps = 10 * 100 + 100_000
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 500_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
