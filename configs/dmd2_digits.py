"""DMD2 one-step distillation of the quickstart EDM teacher on the 8x8 digits (embedded data).

    python -m genmod.launch --config quickstart                    # the teacher: checkpoints/quickstart
    python -m genmod.launch --config dmd2_digits                   # DMD2
    python -m genmod.launch --config dmd2_digits:fkl               # f-distill, forward KL
    python -m genmod.launch --config dmd2_digits:smoke             # seconds, tiny U-Net, untrained teacher

Generator and critic start as copies of the quickstart U-Net (0.75M params); TTUR 2, GAN
weights 3e-3 / 1e-2, AdamW (wd 0.01, clip 10) at lr 2e-4 for the generator and 1e-4 for the
critic, batch 64, 2,000 steps (1,000 generator updates), ~4.7 min on 2 CPU cores. At this scale
TTUR 2 with the faster generator beats DMD2's TTUR 5 / equal lr (FD_digits 10.2 after 3,000
steps; 2 / 1e-4: 10.3 after 1,500; 5 / 3e-4: 55 after 1,500, the generator outruns its
critic); longer runs plateau (2,500 / 3,000 steps: 5.24 / 5.58). Measured (docs/RESULTS.md,
FD_digits of 898 samples vs 899 digits): DMD2 1 step 5.98 (precision 0.78, recall 0.83),
`:fkl` 5.28 (0.78 / 0.86); the teacher's Heun-18 (35 NFE) samples 2.15, real vs real 2.34.
The goal (student <= teacher) is not reached at this length: the students keep sharp digits
but miss modes (recall).
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
    c.optim.gen.lr, c.dmd2.ttur = 2e-4, 2
    c.total_steps, c.batch_size = 2000, 64
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 10_000.0, 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 100, 500, 500, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "fkl": fkl})
