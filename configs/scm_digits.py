"""sCM on the 8x8 digits that ship with scikit-learn, with the quickstart's U-Net: sCT from
scratch, or sCD from the quickstart EDM teacher (``:scd``, student initialised from it).

    python -m genmod.launch --config scm_digits
    python -m genmod.launch --config quickstart                        # the teacher of :scd
    python -m genmod.launch --config scm_digits:scd

The paper's CIFAR-10 values (sigma_d 0.5, tau ~ N(-1.0, 1.4^2), c = 0.1, RAdam lr 1e-4 with
beta2 0.99, 2-step t_mid 1.1) with a 1,000-step tangent warm-up; 4,000 steps at batch 64 as
cm_digits. ``:scd`` runs the teacher's own network (dropout 0, EDM time input c_noise=edm) so
the student starts as the teacher. Result: not measured yet (iCT 4.31 / 2.71 and DMD2 5.98
FD_digits at 1 / 2 steps, docs/RESULTS.md, are the comparison); score with
``python -m genmod.evaluate fd --workdir checkpoints/scm_digits``.
"""
from genmod import config_lib
from genmod.methods import scm


def smoke(c):
    config_lib.smoke(c, dict(config_lib.TINY_UNET, dropout=c.net.dropout))
    c.scm.warmup_steps = 2
    if c.scm.mode == "scd":
        c.teacher.workdir = "init"


def scd(c):
    c.scm.mode, c.scm.c_noise = "scd", "edm"
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/quickstart", step=0))
    c.net.dropout = 0.0


def get_config(arg=None):
    c = config_lib.base()
    c.method = "scm"
    c.scm = scm.defaults()
    c.scm.warmup_steps = 1000
    c.sample.nfe = 1
    c.data.source, c.data.shape = "digits", (8, 8, 1)
    c.net = config_lib.ConfigDict(dict(arch="unet", model_channels=32, channel_mult=(1, 2), num_blocks=1,
                                       attn_resolutions=(4,), dropout=0.1))
    c.total_steps, c.batch_size = 4000, 64
    c.optim.net.name, c.optim.net.lr, c.optim.net.b2 = "radam", 1e-4, 0.99
    c.ema.halflife_img, c.ema.rampup = 50_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 200, 1000, 1000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "scd": scd})
