"""CDRL on the 8x8 digits that ship with scikit-learn: the CIFAR-10 recipe (6 levels, cosine
log-SNR, step^2 4e-4 c_t sig2_t, Tweedie step) at toy scale.

    python -m genmod.launch --config cdrl_digits

Small conv EBM (16 ch x (1, 2), 1 block, spectral norm) and the quickstart-sized U-Net as
initializer; K = 8 Langevin steps per level (the paper's 8-step point; 15 costs ~2x), 4,000
steps at batch 64, 7-9 steps/s on 2 CPU cores (2-3 before the EBM's convolutions kept their
gradients canonical inside the Langevin loop, ``genmod/nets/conv.py``).
Measured (``python benchmarks/results.py --only cdrl_digits``, docs/RESULTS.md; 4,000 steps in
7.5 min): FD_digits 26.2 with 8 Langevin steps per level (precision 0.49, recall 0.59), 30.2 from
the initializer alone; the samples are digit-shaped but grainy (EDM's quickstart: 2.15 at 35 NFE).
Both networks at Adam lr 1e-4: the published initializer rate (1e-5, 10x below the EBM's) is
meant for 500k steps and barely moves the initializer in a short run.
"""
from genmod import config_lib
from genmod.methods import cdrl

ADAM = dict(name="adam", b1=0.9, b2=0.999, eps=1e-8, warmup_img=0, weight_decay=0.0, clip=1.0)


def smoke(c):
    config_lib.smoke(c)
    c.ebm_net.ch, c.init_net.model_channels, c.init_net.channel_mult = 8, 16, (1,)
    c.cdrl.langevin_steps = 2


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cdrl"
    c.cdrl = cdrl.defaults()
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    del c.net
    c.ebm_net = config_lib.ConfigDict(dict(arch="genmod.nets.ebm:energy", ch=16, ch_mult=(1, 2), num_blocks=1,
                                           spectral_norm=True))
    c.init_net = config_lib.ConfigDict(dict(arch="unet", model_channels=32, channel_mult=(1, 2), num_blocks=1,
                                            attn_resolutions=(4,), dropout=0.1))
    c.optim = config_lib.ConfigDict(dict(ebm={**ADAM, "lr": 1e-4, "warmup_steps": 200},
                                         init={**ADAM, "lr": 1e-4, "warmup_steps": 200}))
    c.cdrl.langevin_steps = 8  # the paper's 8-steps-per-level point (CIFAR-10 FID 4.58)
    c.total_steps, c.batch_size = 4000, 64
    c.ema.halflife_img, c.ema.rampup = 50_000.0, 0.05
    c.sample.nfe = c.cdrl.langevin_steps
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 200, 1000, 1000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
