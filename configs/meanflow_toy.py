"""MeanFlow (Geng et al. 2025) on a 2-D Gaussian mixture (8-mode ring), MLP, 1-NFE.

    python -m genmod.launch --config meanflow_toy

The shared toy recipe (3x256 MLP, batch 512, Adam 2e-3, 3,000 steps) with the official
CIFAR-10 code's v1 (t, r) sampler (Gsunshine/py-meanflow: t ~ lognorm(-0.6, 1.6),
r = min(t, r'), r' ~ lognorm(-4.0, 1.6), 75% r != t), adaptive weight p = 0.75, c = 1e-3.
The paper's ImageNet sampler (both lognorm(-0.4, 1.0), 25% r != t) hardly ever draws t near 1
with r near 0, the pair 1-NFE sampling uses: 1-NFE 0.115 after 600 steps, no better than
untrained, where v1 reaches 0.008 after 1,000 steps and v0 with the paper's CIFAR-10
lognorm(-2, 2) 0.022 after 3,000.
Measured (1,000 samples vs 1,000 ring points, seeds 0-999, ~70 s of training on 2 busy CPU
cores): energy distance 0.0053 at 1 NFE and 0.0053 at 2 (untrained 0.105; iCT 0.0128 at 1
step, rectified flow 0.0023 at 35 NFE). tests/test_meanflow.py trains a shorter run.
"""
from genmod import config_lib
from genmod.methods import meanflow


def get_config(arg=None):
    c = config_lib.base()
    c.method = "meanflow"
    c.meanflow = meanflow.defaults()
    config_lib.toy_recipe(c)
    m = c.meanflow  # official CIFAR-10 v1 (t, r) sampler, p and ratio
    m.tr_sampler, m.P_mean_t, m.P_std_t, m.P_mean_r, m.P_std_r = "v1", -0.6, 1.6, -4.0, 1.6
    m.ratio, m.norm_p = 0.75, 0.75
    c.sample.nfe = 1
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke})
