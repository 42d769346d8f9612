"""f-distill (Jensen-Shannon) one-step distillation of an EDM teacher on ImageNet 64x64.

    python -m genmod.launch --config fdistill_imagenet64         # teacher: checkpoints/edm_imagenet64
    python -m genmod.launch --config fdistill_imagenet64:smoke   # seconds, tiny U-Net, untrained teacher

``dmd2_imagenet64`` (same teacher, networks and [unverified] ADM-width SongUNet) with the
f-distill weighting of NVlabs/FastGen's ImageNet-64 config (fastgen/configs/experiments/EDM/
config_f_distill_in64.py): f = JS (h(r) = r / (r + 1)), ratio clip [0.1, 20], logit clamp 10,
10 sigma-bins with ratio_ema 0.5, batch 512, AdamW lr 2e-6 (generator, critic, discriminator)
without warm-up (configs/methods/config_f_distill.py: warm_up_steps 0), GAN weight 3e-3 / 1e-2.
600k FastGen iterations, each one update (student when iteration % 5 == 0, else critic) =
120k generator + 480k critic updates: genmod ttur 4, 600k steps (``dmd2_cifar10`` has the
source lines). Student EMA beta 0.9999 per iteration, i.e. 0.9999^5 per generator update
(FastGen keeps 0.9999 / 0.99995 / 0.9996; genmod keeps the first).
Expected FID (50k, 1 step): 1.16 (recall 0.66) in the paper (forward-KL 1.21, reverse-KL
1.27); FastGen reproduces 1.11. Not reproduced here.
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
        c.batch_size, c.total_steps, c.dmd2.ttur = 512, 600_000, 4
        c.ema.halflife_img = 512 * math.log(0.5) / (5 * math.log(0.9999))
        for n in dmd2.NETS:
            c.optim[n].warmup_steps = 0
        c = config_lib.apply_presets(c, arg, {"smoke": smoke})
    return c
