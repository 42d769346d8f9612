"""CDRL on a 2-D Gaussian mixture (8-mode ring) with an MLP energy and an MLP initializer.

    python -m genmod.launch --config cdrl_toy

The CIFAR-10 recipe's formulas (6 levels, cosine log-SNR, level-dependent step^2 b2 c_t sig2_t,
Tweedie step) with b2 = 2e-3 for 2-D, K = 4 Langevin steps per level, 6,000 steps at batch 256
(~3 min on one CPU core).
Why 6,000 steps (issue #16, docs/benchmarks.md "CDRL on the mixture family"): the last level
carries x_1 (sigma 0.25) to x_0 (sigma 0.007), where the modes of an unseen mixture (std down to
0.03, some 0.1-0.3 apart) overlap in p(x_0 | x_1); its Langevin step is 0.011, so 4 steps cannot
move a sample between modes, and the initializer's (nearly deterministic) proposal, which only the
EBM's gradient teaches, decides where each sample lands. At 2,000 steps it has not learned that
map: gmm:random:0 3.3x the exact Heun-35 sampler's energy, 19% of samples between modes (every
earlier level matches the true noisy marginal); at 6,000: 2.8x, 5.7% (random:1 lost its 2% mode at
2,000, keeps it at 6,000). Measured (benchmarks/robustness.py, 4,000 samples vs 4,000 mixture
points, seed 0): ring 0.0026 (2.3x Heun-35, off-mode 0.5%), random:5 3.4x (1.2%), random:1 4.9x (0.6%).
docs/RESULTS.md (2048 seeds vs 2048 ring points): energy distance 0.0054 with K = 4 (untrained
~4.4); fewer steps per level when sampling (``--nfe``): 2 -> 0.0030, 1 -> 0.0032, initializer
alone (0) -> 0.0036; ``drl_toy`` trained the same way without the initializer: 4 -> 0.0031,
2 -> 0.0078, 1 -> 0.052 (at 2,000 steps CDRL 0.0060 / 0.0043 / 0.0049 / 0.0075). The initializer makes short
chains suffice (the paper's claim; ``tests/test_cdrl.py`` asserts it at 400 steps: 1 step
0.024 vs DRL 0.243); at the full K = 4 plain DRL is as good or better on this 2-D toy.
The official ``toy_example.py`` instead uses a constant c and b2 = 2e-3 on data spanning +-8;
on this unit-scale ring that step is too large at level 1 (sqrt(d2) ~ 0.13 > the modes' std
0.08) and training diverges after ~500-1000 steps (measured, K = 2), hence the level-dependent c.
Plain DRL with the same everything but the initializer: ``drl_toy``.
"""
from genmod import config_lib
from genmod.methods import cdrl

EBM = dict(arch="genmod.nets.ebm:energy", ch=64, ch_mult=(1, 1), num_blocks=2, spectral_norm=True)
INIT = dict(arch="mlp", hidden=(128, 128, 128), noise_scale=1.0)
ADAM = dict(name="adam", b1=0.9, b2=0.999, eps=1e-8, warmup_img=0, weight_decay=0.0, clip=1.0, warmup_steps=100)


def get_config(arg=None):
    c = config_lib.base()
    c.method = "cdrl"
    c.cdrl = cdrl.defaults()
    c.cdrl.b2, c.cdrl.langevin_steps = 2e-3, 4
    c.data.source, c.data.shape = "gmm:ring", (2,)
    del c.net
    c.ebm_net, c.init_net = config_lib.ConfigDict(EBM), config_lib.ConfigDict(INIT)
    c.optim = config_lib.ConfigDict(dict(ebm={**ADAM, "lr": 3e-4}, init={**ADAM, "lr": 1e-3}))
    c.total_steps, c.batch_size = 6000, 256
    c.ema.halflife_img = 50_000.0
    c.sample.nfe = c.cdrl.langevin_steps  # Langevin steps per level when sampling
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 2000, 2000, 1024
    return config_lib.apply_presets(c, arg, {"smoke": smoke})


def smoke(c):
    config_lib.smoke(c)
    c.cdrl.langevin_steps = 2
    return c
