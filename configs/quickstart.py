"""Quickstart: EDM on the 1,797 8x8 digits that ship with scikit-learn (no download).

    python -m genmod.launch --config quickstart

A 0.75M-parameter DDPM++-style U-Net, 2,000 steps at batch 64; 6.5 min on 2 CPU cores, compile included (measured from a fresh clone, 2026-12-03).
Leaves in checkpoints/quickstart: checkpoints, samples/main_00002000.png (a fixed-seed
grid of Heun-18 (35 NFE) samples in which digits are recognisable), TensorBoard events
(tb/), metrics.jsonl and config.json. Expected final train/loss ~30 (EDM-weighted,
summed over the 64 pixels; ~64 at init). Measured: 2m50s wall on a quiet machine;
FD_digits 2.15 at 35 NFE (real vs real 2.34; docs/RESULTS.md). On a 2-core AMD EPYC (Zen 4), from a
fresh machine (2026-12-06): 2m56s wall, FD_digits 2.17 (real vs real 2.34) (measured); with the
convolutions on oneDNN (genmod/nets/onednn.py, 2026-12-07): 2m32s wall, FD_digits 2.14 (measured).

    python -m genmod.launch --config quickstart:mnist    # ../shared/data/mnist.npz, 28x28

``:mnist``: the same recipe on MNIST for 800 steps (51k images, under one epoch), ~4.7 min on
2 CPU cores: stroke-like shapes, few clean digits yet; FD_mnist 43.2 / 48.9 at 9 / 35 NFE
(1,000 samples vs 1,000 test images; real vs real 7.3; docs/RESULTS.md).
"""
from genmod import config_lib
from genmod.methods import edm


def mnist(c):
    """28x28 MNIST from an npz (x_train, y_train; the path is relative to the working
    directory), a three-level U-Net (28, 14, 7; 16 channels at 28: a step costs 3.4x the
    digits' instead of 13x with 32; attention at 7), 800 steps at batch 64."""
    c.data.source, c.data.shape = "npz:../shared/data/mnist.npz", (28, 28, 1)
    c.net.model_channels, c.net.channel_mult, c.net.attn_resolutions = 16, (1, 2, 2), (7,)
    c.total_steps, c.ckpt_every, c.sample_every = 800, 400, 400


def get_config(arg=None):
    c = config_lib.base()
    c.method = "edm"
    c.edm = edm.defaults()
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    c.net = config_lib.ConfigDict(dict(arch="unet", model_channels=32, channel_mult=(1, 2), num_blocks=1,
                                       attn_resolutions=(4,), dropout=0.0))
    c.total_steps, c.batch_size = 2000, 64
    c.optim.net.lr = 2e-3
    c.optim.net.warmup_steps = 200
    c.ema.halflife_img = 20_000.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 100, 500, 1000, 64
    return config_lib.apply_presets(c, arg, {"smoke": lambda c: config_lib.smoke(c, config_lib.TINY_UNET),
                                                "mnist": mnist})
