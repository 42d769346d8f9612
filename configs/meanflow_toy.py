"""MeanFlow (Geng et al. 2025) on a 2-D Gaussian mixture (8-mode ring), MLP, 1-NFE.

    python -m genmod.launch --config meanflow_toy          # the minibatch's flow as the target (default)
    python -m genmod.launch --config meanflow_toy:paper    # the paper's JVP identity at toy scale

Default: u(z_t, r, t) regresses onto the minibatch's own average velocity (z_t - z_r) / (t - r),
8 Heun steps of the batch's probability-flow ODE (``meanflow.target=batch_flow``: the MeanFlow
identity integrated exactly for the batch, Xu et al. 2023's stable target field as in cm_toy),
with the adaptive weight p = 0.75, the official CIFAR-10 v1 (t, r) sampler with t's logit mean
moved from -0.6 to 0.4, and cm_toy's optimiser and net (4x256 MLP, RAdam 2e-3 b2 0.99, 30%
cool-down, 5,000 steps at batch 512, ~2 min on one core).
Why (issue #21, docs/benchmarks.md "MeanFlow on the random-mixture family"): with the JVP
identity the 1-NFE map u(z, 0, 1) is bootstrapped through du/dt from r near t, and on the
random-mixture family it stayed 4-15x the exact Heun-35 sampler's energy with modes lost. The
batch-flow target has no bootstrapping; then each (r, t) is learned only from its own draws,
and 1 NFE needs t near 1: lognorm(-0.6, 1.6) draws t > 0.9 4% of the time and lost random:1's 2%
mode, lognorm(0.4, 1.6) draws it 13% and keeps it. The adaptive weight still matters (p = 0,
plain l2: 14.5% of random:0's samples between modes).
Measured (benchmarks/robustness.py, 4,000 samples): ring, grid and gmm:random:0..7, seeds 0 and
1, all 20 runs pass issue #16's bar at 1 and 2 NFE: every mode, 1 NFE 0.35-1.70x Heun-35 (median
0.78x), 2 NFE 0.20-1.22x, off-mode <= 3.9%, final <= 1.19x the best of the last five; random:1 /
random:0 seed 0 at 1 NFE 0.69x / 0.64x (``:paper``: 11.4x / 8.4x, modes lost). Ring (docs/RESULTS.md,
2,048 samples): 0.0017 / 0.0016 at 1 / 2 NFE.
``:paper`` (the earlier default): the JVP identity with the shared toy recipe (3x256 MLP, batch
512, Adam 2e-3, 3,000 steps), v1 sampler t ~ lognorm(-0.6, 1.6), r = min(t, r'), r' ~
lognorm(-4.0, 1.6), 75% r != t, p = 0.75, c = 1e-3; ring 0.0053 at 1 and 2 NFE (1,000 samples vs
1,000 ring points; untrained 0.105). The paper's ImageNet sampler (both lognorm(-0.4, 1.0), 25%
r != t) hardly ever draws t near 1 with r near 0: 1-NFE 0.115 after 600 steps.
"""
from genmod import config_lib
from genmod.methods import meanflow


def paper(c):
    """The JVP identity (the paper's target) with the shared toy recipe."""
    m = c.meanflow
    m.target, m.P_mean_t = "identity", -0.6
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256)))
    c.optim.net.name, c.optim.net.b2, c.optim.net.cooldown_frac = "adam", 0.999, 0.0
    c.total_steps = 3000
    return c


def get_config(arg=None):
    c = config_lib.base()
    c.method = "meanflow"
    c.meanflow = meanflow.defaults()
    config_lib.toy_recipe(c)
    m = c.meanflow  # official CIFAR-10 v1 (t, r) sampler, p and ratio; t drawn nearer 1
    m.tr_sampler, m.P_mean_t, m.P_std_t, m.P_mean_r, m.P_std_r = "v1", 0.4, 1.6, -4.0, 1.6
    m.ratio, m.norm_p = 0.75, 0.75
    m.target = "batch_flow"
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256, 256)))
    c.optim.net.name, c.optim.net.b2, c.optim.net.cooldown_frac = "radam", 0.99, 0.3
    c.total_steps = 5000
    c.sample.nfe = 1
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke, "paper": paper})
