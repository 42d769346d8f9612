"""EDM on a 2-D Gaussian mixture (8-mode ring) with an MLP: the analytic test-bed.

    python -m genmod.launch --config edm_toy

Expected: energy distance to the mixture ~0.01 (untrained: ~1.0) with Heun-18 (35 NFE)
after 3000 steps, ~1 min on 2 CPU cores.
"""
from genmod import config_lib
from genmod.methods import edm


def get_config(arg=None):
    c = config_lib.base()
    c.method = "edm"
    c.edm = edm.defaults()
    config_lib.toy_recipe(c)
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke})
