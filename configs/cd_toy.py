"""Consistency distillation from the exact denoiser of a 2-D Gaussian mixture (8-mode ring).

    python -m genmod.launch --config cd_toy

The teacher is closed-form (``teacher.workdir=analytic``), so the student's error is pure
distillation error. N=18 Karras grid, one Heun teacher step, l2 metric, target EMA mu=0.
Expected (tests/test_cm.py): 1-step energy distance within a small factor of the teacher's
Heun-18 (35 NFE) samples.
"""
from genmod import config_lib
from genmod.methods import cm


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.cm.mode = "cd"
    c.teacher = config_lib.ConfigDict(dict(workdir="analytic", step=0))
    c.sample.nfe = 1
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256)))
    c.total_steps, c.batch_size = 3000, 512
    c.optim.net.name = "radam"
    c.optim.net.lr = 1e-3
    c.ema.halflife_img, c.ema.rampup = 100_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 1000, 1000, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke})
