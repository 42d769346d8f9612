"""sCM (Lu & Song 2024) on a 2-D Gaussian mixture (8-mode ring), MLP: sCT, or sCD from the
exact analytic teacher (``:scd``).

    python -m genmod.launch --config scm_toy
    python -m genmod.launch --config scm_toy:scd
    python -m genmod.launch --config scm_toy:paper     # sCT with the paper's one-sample velocity

TrigFlow with the paper's CIFAR-10 values (sigma_d 0.5, tau ~ N(-1.0, 1.4^2), tangent
normalisation c = 0.1, prior weighting 1 / (sigma_d tan t), learned adaptive weight, 2-step
t_mid 1.1) at toy scale: tangent warm-up over the first 1,000 of 4,000 steps (paper: 10k),
batch 1024 as cm_toy, RAdam 3e-4 with a 30% linear cool-down. Two levers (issue #21,
docs/benchmarks.md "sCM on the random-mixture family"; x the exact Heun-35 sampler's energy on
gmm:random:0 / random:1, seed 0):
- The MLP's time embedding is the paper's low-frequency one (``net.noise_scale=1``: sinusoids of
  t up to 1 rad, not 100): the JVP differentiates through it. At 100, sCD reached 22x and sCT
  58x on random:0, and lr 1e-3 collapsed (393x); at 1, 3.6x / 4.1x at 1e-4, and with
  3e-4 and the cool-down 1.5x / 2.7x (1e-3 still diverges).
- sCT's velocity is the minibatch's PF-ODE (``scm.velocity=batch``, as cm_toy's CT): with the
  pair's own x0 (``:paper``) sCT lost random:1's 2% mode (18.7x, 2/3 modes); with the batch
  0.28x, 3/3.
Measured (``python benchmarks/robustness.py --methods sct,scd --seeds 0``, ~3-4 min a run on one
core; ring, grid, gmm:random:0..7): every mode on 10/10 at 1 and 2 steps, 1-step energy median
0.95x / 0.67x Heun-35 (sCT / sCD; worst 2.8x / 3.0x), final = best of the last five; but 6-12%
of the samples between modes on random:0, 4, 6, 7 (and sCT's random:2), above issue #16's 5%.
"""
from genmod import config_lib
from genmod.methods import scm


def scd(c):
    c.scm.mode, c.scm.velocity = "scd", "sample"  # the teacher's PF-ODE
    c.teacher = config_lib.ConfigDict(dict(workdir="analytic", step=0))


def paper(c):
    """sCT with the paper's one-sample velocity (the pair's own x0)."""
    c.scm.velocity = "sample"


def get_config(arg=None):
    c = config_lib.base()
    c.method = "scm"
    c.scm = scm.defaults()
    c.scm.warmup_steps = 1000
    c.scm.velocity = "batch"  # sCT's dx_t/dt: the minibatch's PF-ODE, not the pair's own (scm.Method.velocity)
    c.sample.nfe = 1
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256), noise_scale=1.0))
    c.total_steps, c.batch_size = 4000, 1024
    c.optim.net.name, c.optim.net.lr, c.optim.net.cooldown_frac = "radam", 3e-4, 0.3
    c.ema.halflife_img, c.ema.rampup = 200_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 2000, 2000, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke, "scd": scd, "paper": paper})
