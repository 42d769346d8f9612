"""DisBack on the 2-D 8-mode ring: degradation recording, then backtracking to the exact teacher.

    python -m genmod.launch --config disback_toy
    python -m genmod.launch --config disback_toy:dmd2       # DMD2 base (or :fdistill, JS)

Teacher: the ring's closed-form denoiser (no weights to copy), so stage 'record' first fits
the auxiliary MLP score s' to the ring by DSM (fit_steps), then trains it on samples of the
initial generator G0 (a narrow Gaussian at the origin) and saves N = 5 path checkpoints.
Stage 'backtrack' trains G from G0 with the VSD / Diff-Instruct gradient (base ``vsd``, no
GAN) against checkpoints 4, 3, 2, 1 (100 steps each) and then the teacher, for 1,500 steps at
TTUR 1 with ``dmd2_toy``'s regression term and generator cool-down (issue #16). TTUR 5 was
needed before the regression term (plain VSD at 1:1 did not learn the ring: energy 0.55 after
1,200 steps, vs 0.003 at TTUR 5); with it, TTUR 5 left G 240 updates and put 12.7% of its samples
between the modes of gmm:random:0. Measured (benchmarks/robustness.py, seed 0): TTUR 1 with
1,200 stage-2 steps 5.2% off-mode there; 1,500 steps (dmd2_toy's 750 generator updates) 4.4%.
Ring, grid and gmm:random:0..7 now: every mode, 0.48-1.29x Heun-35, off-mode <= 4.4%, final <=
1.07x the best of the last five (before: 2 of 4 runs passed).
Measured at TTUR 5 before issue #16 (tests/test_disback.py, fit 200 / 5 x 8 / 800 backtracking steps): the DSM loss of
path checkpoints 0..5 rises on ring samples (1.75 -> 4.42) and falls on G0 samples (8.98 ->
0.30). 1-step energy distance at equal total steps 640 / 840 / 1040: DisBack 0.349 / 0.056 /
0.0078, plain VSD (critic from scratch) 0.014 / 0.004 / 0.003: on this toy backtracking is
slower, not faster (docs/benchmarks.md). Full config then: 0.0055 after 1540 steps (~1 min); an earlier
squared-error variant (weight 1) took gmm:random:0 from 15.9x to 4.1x the exact Heun-35 energy
(4 -> 7/10 modes) and the ring from 3.5x to 1.8x (benchmarks/robustness.py, seed 0).
"""
from genmod import config_lib
from genmod.methods import disback, fdistill


def get_config(arg=None):
    c = config_lib.load("dmd2_toy")
    with c.unlocked():
        c.method = "disback"
        c.disback = disback.defaults()
        c.fdistill = fdistill.defaults()
        c.disback.base, c.disback.num_ckpts, c.disback.record_every, c.disback.fit_steps = "vsd", 5, 8, 300
        c.disback.switch_every = 100
        c.dmd2.loss = "vsd"  # TTUR 1 from dmd2_toy (issue #16; see the docstring)
        c.dmd2.gan_gen_weight = c.dmd2.gan_critic_weight = 0.0
        c.total_steps = 300 + 5 * 8 + 1500  # stage 2 = dmd2_toy's run: the same 750 generator updates
        c = config_lib.apply_presets(c, arg, {"smoke": smoke, "dmd2": dmd2_base, "fdistill": fdistill_base})
    return c


def dmd2_base(c):
    """DMD2 as the base (normalised DM gradient on the 1000-level grid, GAN 3e-3 / 1e-2)."""
    c.disback.base, c.dmd2.loss = "dmd2", "dmd"
    c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight = 3e-3, 1e-2


def fdistill_base(c):
    """f-distill (JS) as the base."""
    dmd2_base(c)
    c.disback.base = "fdistill"


def smoke(c):
    config_lib.smoke(c)
    c.disback.num_ckpts, c.disback.record_every, c.disback.fit_steps, c.disback.switch_every = 2, 1, 1, 1
    c.total_steps = 1 + 2 * 1 + 3
