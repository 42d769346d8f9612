"""sCM (Lu & Song 2024) on a 2-D Gaussian mixture (8-mode ring), MLP: sCT, or sCD from the
exact analytic teacher (``:scd``).

    python -m genmod.launch --config scm_toy
    python -m genmod.launch --config scm_toy:scd

TrigFlow with the paper's CIFAR-10 values (sigma_d 0.5, tau ~ N(-1.0, 1.4^2), tangent
normalisation c = 0.1, prior weighting 1 / (sigma_d tan t), learned adaptive weight, 2-step
t_mid 1.1, RAdam lr 1e-4) at toy scale: tangent warm-up over the first 1,000 of 4,000 steps
(paper: 10k), batch 1024 as cm_toy. The low rate matters: at 1e-3 (cm_toy's) the consistency
phase never improves on the denoiser the warm-up leaves (1-NFE 0.51-0.57 after 1,000-3,000
steps, untrained 0.575; the error against the exact consistency function grows at t <= 0.6),
at 1e-4 sCT reaches 0.073 and sCD 0.095 after 1,000 steps (warm-up 300).
Measured (1,000 samples vs 1,000 ring points, seeds 0-999; 2-3 min on 2 busy CPU cores):
sCT 0.060 / 0.0083 at 1 / 2 steps, sCD 0.021 / 0.0025 (untrained 0.575; iCT 0.0128 / 0.0032,
CD 0.0016 at 1 step). 1-step sCT is the weakest few-step result on the ring: the consistency
error sits at large t, where the tangent (proportional to cos t) is small.
"""
from genmod import config_lib
from genmod.methods import scm


def scd(c):
    c.scm.mode = "scd"
    c.teacher = config_lib.ConfigDict(dict(workdir="analytic", step=0))


def get_config(arg=None):
    c = config_lib.base()
    c.method = "scm"
    c.scm = scm.defaults()
    c.scm.warmup_steps = 1000
    c.sample.nfe = 1
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256)))
    c.total_steps, c.batch_size = 4000, 1024
    c.optim.net.name, c.optim.net.lr = "radam", 1e-4
    c.ema.halflife_img, c.ema.rampup = 200_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 2000, 2000, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke, "scd": scd})
