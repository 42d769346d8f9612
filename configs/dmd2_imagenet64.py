"""DMD2 one-step distillation of a class-conditional EDM teacher on ImageNet 64x64.

    python -m genmod.launch --config dmd2_imagenet64         # teacher: checkpoints/edm_imagenet64
    python -m genmod.launch --config dmd2_imagenet64:smoke   # seconds, tiny U-Net, untrained teacher

DMD2's ImageNet-64 settings (experiments/imagenet/*.sh): batch 280 (40 x 7 GPUs), AdamW lr
2e-6 (betas 0.9/0.999, wd 0.01) for generator, critic and GAN head, 500 warm-up steps then
constant, clip 10, TTUR 5, GAN on from the start (generator 3e-3, critic 1e-2, diffusion-GAN
levels U{0..999}), DM levels U{20..980}, no CFG (label-dropout-free teacher), BF16 in the
original (genmod: float32), no generator EMA in the original (here a long one for previews).
200k iterations counted as tianweiy/DMD2 does (main/edm/train_edm.py: every iteration updates
the critic, and the generator too when ``step % dfake_gen_update_ratio (5) == 0``) = 200k
critic + 40k generator updates = 240k genmod steps at ttur 5. (NVlabs/FastGen counts
differently, one update per iteration: see ``dmd2_cifar10``.) DMD2's 500 warm-up steps are
iterations; genmod counts each net's own updates (the generator's warm-up is 5x longer here).
Expected FID (50k, 1 step, EDM reference statistics): 1.51 for this from-scratch GAN run
(200k iterations, 53 h on 7 GPUs); 1.28 needs DMD2's two phases (410k iterations without
GAN, FID 2.61, then 140k with GAN at lr 5e-7), i.e. ``:no_gan`` then a ``--force`` resume
with the GAN weights and lr 5e-7. The teacher (EDM ADM, 2.35 FID at 79 NFE in the f-distill
paper) is [unverified] here: genmod has no ADM backbone, so config.net is a SongUNet with
ADM's widths (192 ch, mult 1-2-3-4, 3 blocks, attention at 32/16/8, 8x8x768 bottleneck,
as the GAN head expects), and the teacher must be an EDM run of that net in
checkpoints/edm_imagenet64 (data: tfds imagenet_resized/64x64 [unverified vs EDM's box
resize]).
Data: ``tfds:imagenet_resized/64x64``, or the official npz batches read as is (no tfds):
``--config.data.source=imagenet64:DIR`` with Imagenet64_train_part1_npz, _part2_npz and
Imagenet64_val_npz extracted under DIR (the tfds set's images and 0-based labels; README, Data).
"""
import math

from genmod import config_lib
from genmod.methods import dmd2
from genmod.nets import unet


def smoke(c):
    dmd2.smoke(config_lib.smoke64(c))


def no_gan(c):
    """Phase 1 of the 1.28 run: no GAN, 410k iterations (FID 2.61)."""
    c.dmd2.gan_gen_weight = c.dmd2.gan_critic_weight = 0.0
    c.total_steps = 410_000 * 6 // 5


def get_config(arg=None):
    c = config_lib.base()
    c.method = "dmd2"
    c.dmd2 = dmd2.defaults()
    c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight, c.dmd2.ttur = 3e-3, 1e-2, 5
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_imagenet64", step=0))
    c.data.source, c.data.shape, c.data.num_classes = "tfds:imagenet_resized/64x64", (64, 64, 3), 1000
    c.net = config_lib.ConfigDict(dict(arch="unet", **unet.adm_imagenet64()))
    c.optim = dmd2.optim(lr=2e-6, warmup_steps=500, weight_decay=0.01, clip=10.0)
    c.total_steps, c.batch_size = 240_000, 280
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 280 * math.log(0.5) / math.log(0.9999), 0.0  # beta 0.9999 per generator update
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "no_gan": no_gan})
