"""EDM on CIFAR-10 (Karras et al. 2022), DDPM++ ("VP") unconditional, paper settings.

    python -m genmod.launch --config edm_cifar10
    python -m genmod.launch --config edm_cifar10:smoke       # seconds, on any CPU
    python -m genmod.launch --config edm_cifar10:ncsnpp --workdir checkpoints/edm_cifar10_ncsnpp

Data: tfds ``cifar10`` (prepare it once with tfds), or offline
``--config.data.source=npz:PATH/cifar10_batch1.npz`` for the first 10k images.
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

SMOKE_UNET = dict(arch="unet", model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(16,),
                  dropout=0.13)


def smoke(c):
    return config_lib.smoke(c, SMOKE_UNET, data_source="synthetic:32x32x3")


def ncsnpp(c):
    """EDM's "VE" architecture (NCSN++, 56.4M): the teacher that cd_cifar10 distills."""
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ncsnpp_cifar10()))


def get_config(arg=None):
    c = config_lib.base()
    c.method = "edm"
    c.edm = edm.defaults()
    c.data.source, c.data.shape = "tfds:cifar10", (32, 32, 3)
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.ddpmpp_cifar10()))
    c.total_steps, c.batch_size = 390_625, 512
    c.optim.net.lr = 1e-3
    c.optim.net.warmup_img = 10_000_000
    c.ema.halflife_img, c.ema.rampup = 500_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "ncsnpp": ncsnpp})
