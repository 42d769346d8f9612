"""DMD2 one-step distillation of the quickstart EDM teacher on the 8x8 digits (embedded data).

    python -m genmod.launch --config quickstart                    # the teacher: checkpoints/quickstart
    python -m genmod.launch --config dmd2_digits                   # DMD2
    python -m genmod.launch --config dmd2_digits:fkl               # f-distill, forward KL
    python -m genmod.launch --config dmd2_digits:smoke             # seconds, tiny U-Net, untrained teacher

Generator and critic start as copies of the quickstart U-Net (0.75M params); TTUR 5, GAN
weights 3e-3 / 1e-2, AdamW lr 1e-4 (wd 0.01), clip 10, batch 64, 3,000 steps (500 generator
updates), ~6.5 min on 2 CPU cores. Measured (docs/RESULTS.md, FD_digits of 898 samples vs
899 digits): DMD2 1 step 10.2 (precision 0.78, recall 0.75), `:fkl` 10.8 (0.76 / 0.76); the
teacher's Heun-18 (35 NFE) samples 2.15, real vs real 2.34. The goal (student <= teacher)
is not reached at this length: the students keep sharp digits but drop modes (recall).
"""
from genmod import config_lib
from genmod.methods import dmd2, fdistill

def smoke(c):
    dmd2.smoke(config_lib.smoke(c, config_lib.TINY_UNET))


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
    c.total_steps, c.batch_size = 3000, 64
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 10_000.0, 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 100, 500, 500, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "fkl": fkl})
