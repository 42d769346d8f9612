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
Data: ``tfds:imagenet_resized/64x64``, or the official npz batches read as is (no tfds):
``--config.data.source=imagenet64:DIR`` with Imagenet64_train_part1_npz, _part2_npz and
Imagenet64_val_npz extracted under DIR (the tfds set's images and 0-based labels; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import disback, dmd2
from genmod.nets import unet


def smoke(c):
    disback.smoke(config_lib.smoke64(c))


def get_config(arg=None):
    c = config_lib.base()
    disback.vsd_image(c, "checkpoints/edm_imagenet64")
    c.data.source, c.data.shape, c.data.num_classes = "tfds:imagenet_resized/64x64", (64, 64, 3), 1000
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.adm_imagenet64()))
    c.optim = dmd2.optim(lr=2e-6, weight_decay=0.0, clip=10.0)
    c.batch_size = 280
    c.total_steps = 10 * 100 + 200_000
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 280 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
