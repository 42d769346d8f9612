"""sCM (Lu & Song 2024) on unconditional CIFAR-10: sCT from scratch, or sCD (``:scd``) from
genmod's EDM DDPM++ teacher (``edm_cifar10``), the student initialised from the teacher.

    python -m genmod.launch --config scm_cifar10
    python -m genmod.launch --config edm_cifar10                       # the teacher of :scd
    python -m genmod.launch --config scm_cifar10:scd
    python -m genmod.launch --config scm_cifar10:smoke                 # seconds, on any CPU

Published FID (50k, 1 / 2 steps): sCT 2.97 / 2.06, sCD 3.66 / 2.52 (paper, Table 3
[unverified: from memory of the paper]); NVlabs/FastGen's reproductions 3.23 (sCT) and
3.22 (sCD) at 1 step. Settings: TrigFlow, sigma_d 0.5, tau ~ N(-1.0, 1.4^2), tangent
normalisation c = 0.1, tangent warm-up 10k steps, learned adaptive weight with the prior
1 / (sigma_d tan t), 2-step t_mid 1.1 (paper); batch 512, RAdam beta (0.9, 0.99), dropout 0.2
(0 for sCD), EMA 0.9999 per step, 350k (sCT) / 500k (sCD) steps (FastGen's CIFAR-10 configs,
config_sct_cifar10.py / config_scd_cifar10.py); lr 1e-4 [unverified]. Network: EDM's DDPM++
55.7M (the paper's CIFAR-10 network is EDM's with modifications not reproduced here); c_noise = t
(the paper's TrigFlow time input) for sCT, EDM's log(sigma) / 4 for sCD so that the student is the
teacher at step 0; with that input sigma 20-80 are distinct inputs the student must be trained
on (on digits, 1-step FD 43 from sigma 80 against 5.0 from sigma 10 at P_std 1.4), so ``:scd``
draws tau ~ N(-1.0, 1.8^2), FastGen's value for EDM-network checkpoints (1.3% of draws above
sigma 20; sampling still starts at 80, as FastGen's t_list). Deviations: FastGen initialises sCT from a pretrained EDM network too, here sCT
starts from scratch; tangent normalisation uses the plain L2 norm of the paper (FastGen divides
the norm by sqrt(D)). Hardware: not measured (the paper reports no CIFAR-10 budget).
"""
import math

from genmod import config_lib
from genmod.methods import scm
from genmod.nets import unet


def scd(c):
    c.scm.mode, c.scm.c_noise = "scd", "edm"
    c.scm.P_std = 1.8  # FastGen's value for an EDM-network student: trains the sigma 20-80 that sampling starts from
    c.teacher = config_lib.ConfigDict(dict(workdir="checkpoints/edm_cifar10", step=0))
    c.net.dropout, c.net.augment_dim = 0.0, 9  # edm_cifar10's network, so the student starts as the teacher
    c.total_steps = 500_000


def smoke(c):
    config_lib.smoke32(c)
    c.scm.warmup_steps = 2
    if c.scm.mode == "scd":
        c.teacher.workdir = "init"


def get_config(arg=None):
    c = config_lib.base()
    c.method = "scm"
    c.scm = scm.defaults()
    c.sample.nfe = 1
    c.data.source, c.data.shape, c.data.flip = "cifar10", (32, 32, 3), True
    c.net = config_lib.ConfigDict(dict(arch="unet", **{**unet.ddpmpp_cifar10(), "dropout": 0.2}))
    c.total_steps, c.batch_size = 350_000, 512
    c.optim.net.name, c.optim.net.lr, c.optim.net.b2 = "radam", 1e-4, 0.99
    c.ema.halflife_img, c.ema.rampup = 512 * math.log(0.5) / math.log(0.9999), 0.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke, "scd": scd})
