"""DisBack one-step distillation of a class-conditional EDM teacher on ImageNet 64x64.

    python -m genmod.launch --config disback_imagenet64         # teacher: checkpoints/edm_imagenet64
    python -m genmod.launch --config disback_imagenet64:smoke   # seconds, tiny U-Net, untrained teacher

The paper's ImageNet-64 result distills the EDM ImageNet-64 (ADM) teacher with Diff-Instruct
/ VSD as the base: 1-step FID 1.38 (paper abstract, v3). Known: the two stages, the base,
the degradation run's shape in the official (SDXL) code (N = 10 checkpoints 100 steps apart,
a target switch every 1000 steps). Unknown [unverified]: batch, learning rates, stage
lengths and the update ratio for ImageNet-64; the values below are placeholders (batch 280,
Adam lr 2e-6 as in DMD2's ImageNet run, 1:1 updates, 200k backtracking steps). The teacher
and networks are ``dmd2_imagenet64``'s [unverified] ADM-width SongUNet (genmod has no ADM).
"""
import math

from genmod import config_lib
from genmod.methods import disback, dmd2, fdistill

ADM_LIKE = dict(arch="unet", model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3,
                attn_resolutions=(32, 16, 8), dropout=0.1, embedding_type="positional", channel_mult_noise=1,
                encoder_type="standard", decoder_type="standard", resample_filter=(1, 1))


def smoke(c):
    config_lib.smoke(c, dict(arch="unet", model_channels=16, channel_mult=(1, 2), num_blocks=1,
                             attn_resolutions=(), dropout=0.0), data_source="synthetic:64x64x3")
    c.data.num_classes = 10
    c.teacher.workdir = "init"
    c.disback.num_ckpts, c.disback.record_every = 1, 1  # one path checkpoint: no retrace at a switch
    c.total_steps = 1 + 3


def get_config(arg=None):
    c = config_lib.base()
    c.method = "disback"
    c.disback = disback.defaults()
    c.disback.base, c.disback.num_ckpts, c.disback.record_every, c.disback.switch_every = "vsd", 10, 100, 1000
    c.dmd2, c.fdistill = dmd2.defaults(), fdistill.defaults()
    c.dmd2.loss, c.dmd2.ttur, c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight = "vsd", 1, 0.0, 0.0
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_imagenet64", step=0))
    c.data.source, c.data.shape, c.data.num_classes = "tfds:imagenet_resized/64x64", (64, 64, 3), 1000
    c.net = config_lib.ConfigDict(ADM_LIKE)
    c.optim = dmd2.optim(lr=2e-6, weight_decay=0.0, clip=10.0)
    c.batch_size = 280
    c.total_steps = 10 * 100 + 200_000
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 280 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
