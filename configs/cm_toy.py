"""iCT (improved consistency training) on a 2-D Gaussian mixture (8-mode ring), MLP.

    python -m genmod.launch --config cm_toy

Paper iCT recipe at toy scale: pseudo-Huber on the per-sample norm (c set explicitly: the
0.00054 sqrt(d) rule gives a uselessly small 0.00076 for d=2), lognormal index pmf
(-1.1, 2.0), doubling curriculum 11 -> 1281 over the run, batch 1024.
Expected (tests/test_cm.py): 1-step energy distance well under the untrained model's, and
2-step (sigma_mid 0.821) below 1-step.
"""
from genmod import config_lib
from genmod.methods import cm


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cm"
    c.cm = cm.defaults()
    c.cm.huber_c = 0.03
    c.cm.s1 = 160  # toy-sized curriculum: N = 11, 21, 41, 81, 161
    c.sample.nfe = 1
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.net = config_lib.ConfigDict(dict(arch="mlp", hidden=(256, 256, 256)))
    c.total_steps, c.batch_size = 4000, 1024
    c.optim.net.name = "radam"
    c.optim.net.lr = 1e-3
    c.ema.halflife_img, c.ema.rampup = 200_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 2000, 2000, 2048
    return config_lib.apply_presets(c, arg, {"smoke": config_lib.smoke})
