"""iCT on the 8x8 digits that ship with scikit-learn, with the quickstart's U-Net.

    python -m genmod.launch --config cm_digits

The quickstart network (0.75M params) trained by iCT instead of EDM: 4,000 steps at batch
64 with the doubling curriculum (N = 11 ... 1281, K' = 500 steps), ~6.5 min on 2 CPU cores.
Batch 64 beats batch 128 at equal steps (FD_digits 1 / 2 steps 4.59 / 3.50 at batch 128 in
twice the time) and at equal images (2,000 steps at batch 128: 6.75 / 5.06).
Measured (docs/RESULTS.md: 898 samples vs 899 digits, FD in a seeded digit classifier's
features): FD_digits 4.31 at 1 step, 2.71 at 2 steps; the quickstart EDM teacher reaches 2.15
with Heun-18 (35 NFE) and real vs real digits 2.34.
"""
from genmod import config_lib
from genmod.methods import cm


def smoke(c):
    config_lib.smoke(c, dict(config_lib.TINY_UNET, dropout=0.1))


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.sample.nfe = 1
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    c.net = config_lib.ConfigDict(dict(arch="unet", model_channels=32, channel_mult=(1, 2), num_blocks=1,
                                       attn_resolutions=(4,), dropout=0.1))
    c.total_steps, c.batch_size = 4000, 64
    c.optim.net.name, c.optim.net.lr = "radam", 5e-4
    c.ema.halflife_img, c.ema.rampup = 50_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 200, 1000, 1000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
