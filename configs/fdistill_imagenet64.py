"""f-distill (Jensen-Shannon) one-step distillation of an EDM teacher on ImageNet 64x64.

    python -m genmod.launch --config fdistill_imagenet64         # teacher: checkpoints/edm_imagenet64
    python -m genmod.launch --config fdistill_imagenet64:smoke   # seconds, tiny U-Net, untrained teacher

``dmd2_imagenet64`` (same teacher, networks and [unverified] ADM-width SongUNet) with the
f-distill weighting of FastGen's ImageNet-64 config: f = JS (h(r) = r / (r + 1)), ratio
clip [0.1, 20], logit clamp 10, 10 sigma-bins with ratio_ema 0.5, batch 512, AdamW lr 2e-6
(generator, critic, discriminator), GAN weight 3e-3 / 1e-2, TTUR 5, 600k iterations
(= 720k genmod steps, iterations counted in critic updates [unverified]), student EMA
0.9999 per generator update (FastGen keeps 0.9999 / 0.99995 / 0.9996; genmod keeps one).
Expected FID (50k, 1 step): 1.16 (recall 0.66) in the paper (forward-KL 1.21, reverse-KL
1.27); FastGen reproduces 1.11. Not reproduced here [unverified].
Data: ``tfds:imagenet_resized/64x64``, or the official npz batches read as is (no tfds):
``--config.data.source=imagenet64:DIR`` with Imagenet64_train_part1_npz, _part2_npz and
Imagenet64_val_npz extracted under DIR (the tfds set's images and 0-based labels; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import dmd2, fdistill


def smoke(c):
    dmd2.smoke(config_lib.smoke64(c))


def get_config(arg=None):
    c = config_lib.load("dmd2_imagenet64")
    with c.unlocked():
        c.method = "fdistill"
        c.fdistill = fdistill.defaults()
        c.fdistill.f, c.fdistill.ratio_ema = "js", 0.5
        c.batch_size, c.total_steps = 512, 720_000
        c.ema.halflife_img = 512 * math.log(0.5) / math.log(0.9999)
        c = config_lib.apply_presets(c, arg, {"smoke": smoke})
    return c
