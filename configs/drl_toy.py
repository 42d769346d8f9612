"""Plain DRL (diffusion recovery likelihood, Gao et al. 2021) on the 8-mode ring: ``cdrl_toy``
without the initializer, each level's Langevin chain starting at x_t.

    python -m genmod.launch --config drl_toy

Measured (docs/RESULTS.md, 2048 seeds vs 2048 ring points, 6,000 steps as cdrl_toy so that the
two stay comparable, ~2 min on one core): energy distance 0.0031 with K = 4 (as trained), but
0.0078 with 2 and 0.052 with 1 step per level at sampling (``--nfe``), where ``cdrl_toy`` gets
0.0030 / 0.0032 (at 2,000 steps: 0.003 / 0.010 / 0.114).
Kept from ``cdrl_toy`` on purpose so that only the initializer differs: the cosine log-SNR
schedule, shared-noise pairs, step size and K = 4 (the DRL paper: linear beta schedule,
independent noise, b2 = 2e-4, 30 steps per level, EMA 0.999, test-time noise x0.99).
"""
from genmod import config_lib


def get_config(arg=None):
    c = config_lib.load("cdrl_toy")
    c.unlock()
    c.cdrl.initializer = False
    del c.init_net, c.optim.init
    return config_lib.apply_presets(c, arg, {"smoke": smoke})


def smoke(c):
    config_lib.smoke(c)
    c.cdrl.langevin_steps = 2
    return c
