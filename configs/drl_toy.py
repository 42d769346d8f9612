"""Plain DRL (diffusion recovery likelihood, Gao et al. 2021) on the 8-mode ring: ``cdrl_toy``
without the initializer, each level's Langevin chain starting at x_t.

    python -m genmod.launch --config drl_toy

Measured at cdrl_toy's earlier 2,000 steps (2000 seeds): energy distance 0.003 with K = 4 (as
trained), but 0.010 with 2 and 0.114 with 1 step per level at sampling (``--nfe``), where
``cdrl_toy`` got 0.005 / 0.006; ~1.5 min on 2 shared CPU cores. Its 6,000 steps now (cdrl_toy's,
so that the two stay comparable) take ~3x that; not re-measured yet.
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
