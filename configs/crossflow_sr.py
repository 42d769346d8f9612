"""CrossFlow image-to-image: super-resolution by flowing from the bicubic-upsampled low-res
image (through an image Variational Encoder) to the high-res target, no noise source and no
concatenation conditioning (Liu et al. 2025, Sec. 4.3). Offline on sklearn digits, 4x4 -> 8x8.

    python -m genmod.launch --config crossflow_sr
    python -m genmod.launch --config crossflow_sr:mnist   # npz:../shared/data/mnist.npz, 7x7 -> 28x28 (4x)
    python -m genmod.launch --config crossflow_sr:cifar   # npz:../shared/data/cifar10_batch1.npz, 16 -> 32 (2x)
    python -m genmod.crossflow_sample --workdir checkpoints/crossflow_sr --image lowres.png --out sr.png

Low-res = box-filter downsampling by ``crossflow.factor``; ``sample`` draws held-out images
(``crossflow.eval_split``) by seed. No CFG (p_uncond 0). Small DDPM++ U-Net (the DiT works too:
``--config.net.arch=genmod.nets.dit:dit``). Expected on 2 CPU cores (~2 min): PSNR on
held-out digits above bicubic upsampling's (tests/test_crossflow.py measures a shorter run).
"""
from genmod import config_lib
from genmod.methods import crossflow

UNET = dict(arch="unet", model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(), dropout=0.0)


def mnist(c):
    c.data.source, c.data.shape = "npz:../shared/data/mnist.npz", (28, 28, 1)
    c.crossflow.factor = 4
    c.net.model_channels, c.net.channel_mult, c.net.attn_resolutions = 32, (1, 2, 2), (7,)
    c.total_steps = 20_000


def cifar(c):
    c.data.source, c.data.shape, c.data.flip = "npz:../shared/data/cifar10_batch1.npz", (32, 32, 3), True
    c.crossflow.eval_split = "train"  # batch 1 has no test split: sample() conditions on training images
    c.net.model_channels, c.net.channel_mult, c.net.attn_resolutions = 64, (1, 2, 2), (8,)
    c.total_steps = 50_000


def smoke(c):
    config_lib.smoke(c, dict(UNET, model_channels=8, channel_mult=(1,)), data_source="synthetic:8x8x1")
    c.data.shape = (8, 8, 1)
    c.crossflow.ve = dict(c.crossflow.ve, width=8, depth=1)
    c.crossflow.enc = dict(width=8, hidden=32)


def get_config(arg=None):
    c = config_lib.base()
    c.method = "crossflow"
    c.crossflow = crossflow.defaults()
    c.crossflow.source, c.crossflow.factor, c.crossflow.p_uncond = "image", 2, 0.0
    c.crossflow.kl, c.crossflow.kl_weight, c.crossflow.clip_weight = "standard", 1e-4, 0.1
    c.crossflow.ve = dict(width=32, depth=1, logvar_init=-4.0)
    c.crossflow.enc = dict(width=16, hidden=128)
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    c.net = config_lib.ConfigDict(UNET)
    c.total_steps, c.batch_size = 2000, 32
    c.optim.net.lr = 2e-3
    c.optim.net.warmup_steps = 100
    c.ema.halflife_img, c.ema.rampup = 20_000.0, 0.05
    c.sample.nfe = 10
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 250, 1000, 1000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "mnist": mnist, "cifar": cifar})
