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
clipping), 8/10 modes, 27% off-mode with the uniform pair index of Song et al. 2023.
Why (benchmarks/cm_levels.py, docs/benchmarks.md "Robustness, round 3"): the student is exact up
to t = 0.06 and loses the map at t = 0.14-0.3, where thin modes become distinguishable and the
consistency function must jump between them; the uniform index gives those levels 2 of 17
pairs. iCT's lognormal pair pmf (``cm.index=lognormal``) centres the pairs there: random:0 2.0x,
10/10 modes, 13% off-mode at 1 step (1.7x, 9.4% at 2 steps), but on the ring it spikes late
(last five 0.0022, 0.17, 0.056, 0.023, 0.0073: 6.4x), so it is not the default; iCT's
1/(t_{i+1} - t_i) weight (``cm.weight=inv_dsigma``) alone: random:0 1.9x, 11% (2 steps 4.4x).
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
    c.cm.sample_sigmas = (80.0, float(cm.karras(7, c.cm.cd_N)))  # 1.088: the grid level nearest the paper's 0.821
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.cm.cd_span = 17  # CTM's soft matching: the exact teacher carries each pair 1-17 levels down
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256, 256)))
    c.total_steps, c.batch_size = 4000, 512
    c.optim.net.name = "radam"
    c.optim.net.lr, c.optim.net.cooldown_frac = 1e-3, 0.3
    c.ema.halflife_img, c.ema.rampup = 100_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 1000, 1000, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke})
