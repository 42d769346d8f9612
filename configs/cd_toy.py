"""Consistency distillation from the exact denoiser of a 2-D Gaussian mixture (8-mode ring).

    python -m genmod.launch --config cd_toy

The teacher is closed-form (``teacher.workdir=analytic``), so the student's error is pure
distillation error. N=18 Karras grid, one Heun teacher step, l2 metric, target EMA mu=0.
Expected (tests/test_cm.py): 1-step energy distance within a small factor of the teacher's
Heun-18 (35 NFE) samples. RAdam lr 4e-4 (Song et al. 2023's CD setting): at 1e-3 the loss
spiked late in training and the final checkpoint could land in a spike (issue #16; clipping
the gradient norm at 1 does not help, the lower rate does). Measured (benchmarks/robustness.py,
4,000 samples, seed 0): ring 1-step 0.0016 (1.4x the exact Heun-35 sampler; 0.0073 at 1e-3),
last five checkpoints decreasing; gmm:random:0 (10 modes) 0.0049 (3.5x; 0.0084 at 1e-3 with
clipping), 8/10 modes, 27% off-mode: the 1-step map between thin modes is still too smooth.
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
    c.optim.net.lr = 4e-4  # the CM paper's CD rate; 1e-3 spiked (ring: 0.0022 -> 0.17 at step 2100)
    c.ema.halflife_img, c.ema.rampup = 100_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 1000, 1000, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke})
