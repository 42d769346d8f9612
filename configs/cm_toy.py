"""Consistency training (no teacher) on a 2-D Gaussian mixture (8-mode ring), MLP.

    python -m genmod.launch --config cm_toy          # CT with the minibatch's posterior (default)
    python -m genmod.launch --config cm_toy:ict      # the paper's iCT recipe at toy scale

Default: CT whose target point comes from the minibatch's posterior mean E[x0 | x_t]
(``cm.ct_x0=batch``, Xu et al. 2023's stable target field) instead of the pair's own x0, so CT
is CD with the minibatch as its teacher and takes cd_toy's levers: an N=18 grid, CTM's soft
matching (the batch's probability-flow ODE carries each pair 1-17 levels down in two Heun steps
per level, at no network cost), target EMA 0, a 4x256 MLP, RAdam lr 2e-3 (b2 0.99) with a 50%
cool-down, 5,000 steps; pseudo-Huber (c 0.03) on the per-sample norm, whose minimiser is a median: where
one minibatch's ODE sends x_t to one mode and the next batch to another (a border, or a 2%
mode's share of 512 points), l2 would average the two into the gap between them. The cool-down
is 50%, not 30%: the 1-step map's borders between modes, set at large sigma from 512-point
minibatches, take a random walk whose step is the lr (0.3% of the mass moved between two modes of
random:3 over the last 2,000 steps), and the final checkpoint is one draw of it (docs/benchmarks.md
"Robustness, round 8"). The EMA averages that walk: half-life 250k images (~500 steps), its
rampup cap 0.1 of the images seen, so the first checkpoints of the cool-down do not average
iterates from before they converged (the cap at 0.2 did: 2.3x worse energy); at 100k / 0.05 the
final checkpoint was one draw among the last five (19/20 runs within 1.2x the best; "round 12").
Why not iCT (issue #16, docs/benchmarks.md "Robustness, round 6"): iCT's target f(x + r z, r)
uses one sample's velocity; it is unbiased, but f is not linear, so the target averages f over
a spread (t - r) std(x0 | x_t) that is as wide as a thin mode where modes separate, and the
blur compounds over up to 160 bootstrapped hops: gmm:random:0 10.4x the exact Heun-35 sampler,
28% of samples between modes (4x256, cool-down, Adam b2 0.99, the paper's s1 1280: none helps).
Measured (benchmarks/robustness.py, 4,000 samples, seeds 0 and 1, ~4 min a run on 2 cores):
ring, grid and gmm:random:0..7, 1 and 2 steps: every mode on 20/20 runs, 0.08-2.37x the exact
Heun-35 sampler (median 0.45x; 2 steps 0.19-1.37x), off-mode <= 4.8%, final <= 1.15x the best of
its last five on 20/20 (EMA 100k / 0.05: 19/20, worst 1.25; worst energy 2.32x, median 0.44x).
Ring 1-step 0.0009 (0.81x), 2-step 0.0007.
``:ict``: pseudo-Huber c 0.03 (the 0.00054 sqrt(d) rule gives 0.00076 for d=2), lognormal index
pmf (-1.1, 2.0), doubling curriculum 11 -> 161 over the run, batch 1024; measured ring 1-step
0.0128, 2-step (sigma_mid 0.821) 0.0032 (docs/RESULTS.md).
"""
from genmod import config_lib
from genmod.methods import cm


def _common():
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.sample.nfe = 1
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.optim.net.name = "radam"
    c.optim.net.lr = 1e-3
    return c


def _ict():
    c = _common()
    c.cm.huber_c = 0.03
    c.cm.s1 = 160  # toy-sized curriculum: N = 11, 21, 41, 81, 161
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256)))
    c.total_steps, c.batch_size = 4000, 1024
    c.ema.halflife_img, c.ema.rampup = 200_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 2000, 2000, 2048
    return c


def _batch_ct():
    c = _common()
    c.cm.mode, c.cm.ct_x0 = "ct", "batch"  # CD's grid, span, sub-steps and mu, the minibatch as teacher
    c.cm.cd_span, c.cm.cd_substeps, c.cm.target_mu = 17, 2, 0.0
    c.cm.metric, c.cm.huber_c = "huber", 0.03
    c.cm.sample_sigmas = (80.0, float(cm.karras(7, c.cm.cd_N)))  # 1.088: a grid level (cd_toy's docstring)
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256, 256)))
    c.total_steps, c.batch_size = 5000, 512
    c.optim.net.lr, c.optim.net.cooldown_frac, c.optim.net.b2 = 2e-3, 0.5, 0.99
    c.ema.halflife_img, c.ema.rampup = 250_000.0, 0.1  # ~500 steps of the borders' walk (docstring)
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 1000, 1000, 2048
    return c


def get_config(arg=None):
    c = _ict() if "ict" in (arg or "").split(",") else _batch_ct()
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke, "ict": lambda c: c})
