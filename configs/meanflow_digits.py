"""MeanFlow on the 8x8 digits that ship with scikit-learn, with the quickstart's U-Net, 1-NFE.

    python -m genmod.launch --config meanflow_digits

The quickstart network (0.75M params; h = t - r enters through its label input, see
genmod/methods/meanflow.py) trained by MeanFlow: 4,000 steps at batch 64, Adam 6e-4 (the
paper's CIFAR-10 rate) with a 200-step warm-up, the official CIFAR-10 v1 (t, r) sampler
(t ~ lognorm(-0.6, 1.6), r ~ lognorm(-4.0, 1.6), 75% r != t), p = 0.75, c = 1e-3, dropout 0.1.
Result: not measured yet (the iCT and DMD2 digits rows, docs/RESULTS.md, are the comparison:
FD_digits 4.31 / 5.98 at 1 step); score with ``python -m genmod.evaluate fd --workdir
checkpoints/meanflow_digits``.
"""
from genmod import config_lib
from genmod.methods import meanflow


def smoke(c):
    config_lib.smoke(c, dict(config_lib.TINY_UNET, dropout=0.1))


def get_config(arg=None):
    c = config_lib.base()
    c.method = "meanflow"
    c.meanflow = meanflow.defaults()
    m = c.meanflow
    m.tr_sampler, m.P_mean_t, m.P_std_t, m.P_mean_r, m.P_std_r = "v1", -0.6, 1.6, -4.0, 1.6
    m.ratio, m.norm_p = 0.75, 0.75
    c.sample.nfe = 1
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    c.net = config_lib.ConfigDict(dict(arch="unet", model_channels=32, channel_mult=(1, 2), num_blocks=1,
                                       attn_resolutions=(4,), dropout=0.1))
    c.total_steps, c.batch_size = 4000, 64
    c.optim.net.lr, c.optim.net.warmup_steps = 6e-4, 200
    c.ema.halflife_img, c.ema.rampup = 50_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 200, 1000, 1000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
