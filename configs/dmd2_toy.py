"""DMD2 on the 2-D 8-mode ring (one-step MLP generator) from the ring's exact denoiser.

    python -m genmod.launch --config dmd2_toy
    python -m genmod.launch --config dmd2_toy:4step          # 4-step generator, backward simulation
    python -m genmod.launch --config edm_toy && python -m genmod.launch --config dmd2_toy:edm_teacher

The default teacher is closed-form (``teacher.workdir=analytic``), so the student's error is
pure distillation error. With no teacher weights to copy, the generator starts as a narrow
Gaussian (zero output layer: G(80 z) = c_skip 80 z ~ 0.003 z) and the critic as an
untrained MLP; ``:edm_teacher`` distills the EDM MLP that ``edm_toy`` trains (both start as
copies of it, as in DMD2). TTUR 5 (5 critic updates per generator update), GAN weights
3e-3 / 1e-2, AdamW lr 1e-3 without decay, clip 10.
Measured (energy distance to the ring, 1000 samples, tests/test_dmd2.py): untrained 0.575;
after 600 steps 0.017, after 1500 steps 0.0055 (~1 min on 2 busy CPU cores); the analytic
teacher's own Heun-18 (35 NFE) samples: ~0.001. ``:4step`` after 900 steps: 0.012.
"""
from genmod import config_lib
from genmod.methods import dmd2


def edm_teacher(c):
    c.teacher.workdir = "checkpoints/edm_toy"


def four_step(c):
    c.dmd2.gen_steps = c.sample.nfe = 4


def get_config(arg=None):
    c = config_lib.base()
    c.method = "dmd2"
    c.dmd2 = dmd2.defaults()
    config_lib.toy_recipe(c)
    c.teacher = config_lib.ConfigDict(dict(workdir="analytic", step=0))
    c.optim = dmd2.optim(lr=1e-3, warmup_steps=20, weight_decay=0.0)
    c.total_steps, c.batch_size = 1500, 256
    c.sample.nfe = 1
    c.ema.halflife_img, c.ema.rampup = 5_000.0, 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 250, 500, 500, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke, "edm_teacher": edm_teacher,
                                             "4step": four_step})
