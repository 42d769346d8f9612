"""DMD2 one-step distillation of the quickstart EDM teacher on the 8x8 digits (embedded data).

    python -m genmod.launch --config quickstart                    # the teacher: checkpoints/quickstart
    python -m genmod.launch --config dmd2_digits                   # DMD2
    python -m genmod.launch --config dmd2_digits:fkl               # f-distill, forward KL
    python -m genmod.launch --config dmd2_digits:paper             # DMD2's own recipe (TTUR, GAN range), no regression
    python -m genmod.launch --config dmd2_digits:smoke             # seconds, tiny U-Net, untrained teacher

Generator and critic start as copies of the quickstart U-Net (0.75M params); AdamW (wd 0.01,
clip 10), generator lr 4e-4, critic and GAN head 1e-4, TTUR 1, batch 64, 3,000 steps (1,500
generator updates), ~15 min on 2 CPU cores. Two changes from DMD2 carry it to digits (issue #16):
* DMD's regression on 4,096 teacher pairs (Heun-35, computed once, ``dmd2.reg_pool``), weight
  0.125: its per-sample gradient is a unit vector (pseudo-Huber on the whole sample), the DM
  term's |g| / D (a mean over the D = 64 pixels), so 1 / sqrt(D) keeps the two comparable;
  at weight 1 the student fits its pairs and stops (FD_digits 3.7 at 2,000 and 4,000 steps).
* The diffusion GAN on low noise only (``gan_max_step`` 250 of 1,000: sigma <= 0.17), GAN weights
  3e-2 / 1e-1. Over DMD2's whole grid (median sigma ~2.5 against data in [-1, 1]) the
  discriminator of an 8x8 image stays at chance (critic GAN loss 1.37 ~ ln 4 all run), so the
  real data never reach the generator; on low noise it learns (1.28 at step 1,000).
Measured (FD_digits of 898 samples vs 899 digits, teacher retrained 2026-12-04: Heun-35 2.11,
real vs real 2.34; docs/benchmarks.md "DMD2 on digits"): DMD2 1 step 3.16 after 3,000 steps
(precision 0.75, recall 0.94; 1.50x the teacher), 3.36 after 2,000; ``:fkl`` (f-distill,
forward KL, same recipe) 3.10 (0.75 / 0.93; 1.47x). ``:paper`` (TTUR 2, gen lr
2e-4, GAN over the whole grid at 3e-3 / 1e-2, no regression, 2,000 steps): 5.98 (precision 0.78,
recall 0.83; docs/RESULTS.md before 2026-12-04).
"""
from genmod import config_lib
from genmod.methods import dmd2, fdistill

def smoke(c):
    dmd2.smoke(config_lib.smoke(c, config_lib.TINY_UNET))
    c.dmd2.reg_pool = 256  # one chunk of teacher pairs: the same code path in seconds


def paper(c):
    """DMD2's recipe at this scale (the default before issue #16): no regression, TTUR 2, the
    diffusion GAN over the whole grid at DMD2's weights, 2,000 steps."""
    c.dmd2.reg_weight, c.dmd2.reg_pool, c.dmd2.ttur, c.optim.gen.lr = 0.0, 0, 2, 2e-4
    c.dmd2.gan_max_step, c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight = 1000, 3e-3, 1e-2
    c.total_steps = 2000


def fkl(c):
    c.method, c.fdistill = "fdistill", fdistill.defaults()
    c.fdistill.f = "kl"


def get_config(arg=None):
    c = config_lib.base()
    c.method = "dmd2"
    c.dmd2 = dmd2.defaults()
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/quickstart", step=0))
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    c.net = config_lib.ConfigDict(dict(arch="unet", model_channels=32, channel_mult=(1, 2), num_blocks=1,
                                       attn_resolutions=(4,), dropout=0.0))
    c.optim = dmd2.optim(lr=1e-4, warmup_steps=100, weight_decay=0.01, clip=10.0)
    c.optim.gen.lr, c.dmd2.ttur = 4e-4, 1
    c.dmd2.reg_weight, c.dmd2.reg_pool = 0.125, 4096
    c.dmd2.gan_max_step, c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight = 250, 3e-2, 1e-1
    c.total_steps, c.batch_size = 3000, 64
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 10_000.0, 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 100, 500, 500, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "fkl": fkl, "paper": paper})
