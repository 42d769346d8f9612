"""DisBack (Zhang et al., ICLR 2025): degradation recording, then distribution backtracking,
over a pluggable score-distillation base: VSD / Diff-Instruct (the paper's base for EDM
teachers), DMD2 or f-distill (their networks, losses and TTUR, from ``dmd2.py``).

Stage 'record' (``fit_steps + N * record_every`` steps): the auxiliary score s' (the fake
network) starts as the teacher and is trained by the EDM denoising loss on samples of the
frozen initial generator G0 (the base's critic rule; G never updates). After every
``record_every`` steps s' is written to ``WORKDIR/disback_path/NNN.npz`` (path checkpoint
i = 1..N, with its norms in ``manifest.json``); checkpoint 0 is the teacher itself. A
teacher without weights (``analytic``) cannot be copied: s' is first fitted to the data by
DSM for ``fit_steps`` steps.

Stage 'backtrack' (the rest of ``total_steps``): G starts as G0 and the fake score as s'_N
(it already fits G0: no critic warm-up); the base's rules run unchanged except that the
"real" denoiser is path checkpoint i(step) = N-1, ..., 1, 0 (the teacher), moving one back
at each stage-2 step listed in ``switch_at`` (default: every ``switch_every`` steps), and
the critic keeps fitting fresh generator samples. i(step) is pure in the step, so a resume
lands on the scheduled target. Only the active checkpoint is held (in ``frozen``, swapped by
``host_step`` outside jit); each load is checked against the recorded parameter norm and
distance to the teacher, and a mismatch raises PathError (the official code's load matched
no keys and silently kept the teacher; its switch condition fired only once).
"""
from __future__ import annotations

import json
import os

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genmod import method
from genmod.methods import dmd2, fdistill

BASES = ("vsd", "dmd2", "fdistill")


class PathError(RuntimeError):
    """A path checkpoint is missing or is not the one that stage 'record' wrote."""


def defaults():
    return ml_collections.ConfigDict(dict(
        base="vsd",            # vsd (Diff-Instruct) | dmd2 | fdistill
        num_ckpts=10,          # N: path checkpoints 1..N (0 = the teacher)
        record_every=100,      # stage-1 steps between path checkpoints
        fit_steps=0,           # stage 1 first fits s' to the data (teachers without weights)
        switch_every=1000,     # stage 2: steps on each target N-1 ... 1, then the teacher
        switch_at=(),          # explicit stage-2 switch steps (N-1 of them); overrides switch_every
    ))


def vsd_image(c, teacher_workdir):
    """The paper's setting for EDM teachers: VSD / Diff-Instruct base (1:1 updates, no GAN),
    N = 10 path checkpoints 100 steps apart, a target switch every 1000 steps."""
    c.method, c.disback = "disback", defaults()
    c.dmd2, c.fdistill = dmd2.defaults(), fdistill.defaults()
    c.dmd2.loss, c.dmd2.ttur, c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight = "vsd", 1, 0.0, 0.0
    c.teacher = ml_collections.ConfigDict(dict(workdir=teacher_workdir, step=0))
    return c


def smoke(c):
    """After ``config_lib.smoke``: ``dmd2.smoke``, one path checkpoint (no retrace at a switch)."""
    dmd2.smoke(c)
    c.disback.num_ckpts, c.disback.record_every = 1, 1
    c.total_steps = 1 + 3


def stage_steps(config):
    """(record steps, backtrack steps, switch steps), validated."""
    d = config.disback
    if d.base not in BASES:
        raise ValueError(f"unknown disback.base {d.base!r}; valid: {', '.join(BASES)}")
    if d.num_ckpts < 1 or d.record_every < 1 or d.fit_steps < 0:
        raise ValueError("disback: num_ckpts and record_every must be >= 1 and fit_steps >= 0")
    if config.dmd2.get("reg_pool", 0):
        raise ValueError("disback: dmd2.reg_pool is not supported (its stages swap frozen inputs); use 0")
    n1 = d.fit_steps + d.num_ckpts * d.record_every
    n2 = config.total_steps - n1
    switch = tuple(int(s) for s in (d.switch_at or [k * d.switch_every for k in range(1, d.num_ckpts)]))
    if n2 < 1:
        raise ValueError(f"disback: total_steps {config.total_steps} leaves no backtracking steps after the "
                         f"{n1} recording steps")
    if len(switch) != d.num_ckpts - 1 or any(b <= a for a, b in zip((0,) + switch, switch)) or \
            (switch and switch[-1] >= n2):
        raise ValueError(f"disback.switch_at {switch} must be {d.num_ckpts - 1} increasing stage-2 steps in "
                         f"[1, {n2}) so that the path ends at the teacher")
    return n1, n2, switch


# -- path checkpoints on disk ------------------------------------------------------------------
def path_dir(workdir):
    return os.path.join(workdir, "disback_path")


def to_host(tree):
    """Numpy copy of a (possibly sharded across processes) pytree."""
    from jax.experimental import multihost_utils

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)
    return jax.tree.map(one, tree)


def norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in jax.tree.leaves(tree))))


def distance(a, b):
    return norm(jax.tree.map(lambda x, y: np.asarray(x, np.float64) - np.asarray(y, np.float64), a, b))


def read_manifest(workdir):
    p = os.path.join(path_dir(workdir), "manifest.json")
    return json.load(open(p)) if os.path.exists(p) else {}


def save_ckpt(workdir, i, params, teacher, step):
    """Write path checkpoint i (atomically) and its norms to the manifest."""
    d = path_dir(workdir)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f"{i:03d}.tmp.npz")
    np.savez(tmp, **flax.traverse_util.flatten_dict(params, sep="/"))
    os.replace(tmp, os.path.join(d, f"{i:03d}.npz"))
    man = read_manifest(workdir)
    man[str(i)] = {"step": step, "norm": norm(params), "dist_teacher": distance(params, teacher) if teacher else None}
    with open(os.path.join(d, "manifest.tmp"), "w") as f:
        json.dump(man, f, indent=1)
    os.replace(os.path.join(d, "manifest.tmp"), os.path.join(d, "manifest.json"))


def load_ckpt(workdir, i, like, teacher):
    """Path checkpoint i, verified against its recorded norm and distance to the teacher."""
    f = os.path.join(path_dir(workdir), f"{i:03d}.npz")
    rec = read_manifest(workdir).get(str(i))
    if not os.path.exists(f) or rec is None:
        raise PathError(f"path checkpoint {i} is missing ({f} or its manifest entry); stage 'record' writes it")
    with np.load(f) as z:
        params = flax.traverse_util.unflatten_dict({k: z[k] for k in z.files}, sep="/")
    if jax.tree.structure(params) != jax.tree.structure(like) or any(
            np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(like))):
        raise PathError(f"path checkpoint {i} ({f}) does not match the fake-score network")
    got = {"norm": norm(params), "dist_teacher": distance(params, teacher) if teacher else None}
    for k, v in got.items():
        if v is not None and abs(v - rec[k]) > 1e-6 * max(1.0, abs(rec[k])):
            raise PathError(f"path checkpoint {i} ({f}): parameter {k} {v:.8g} != recorded {rec[k]:.8g}; "
                            f"the file is not the checkpoint stage 'record' wrote")
    return params


# -- the two stages, over any base ---------------------------------------------------------------
def base_class(config):
    return fdistill.Method if config.disback.base == "fdistill" else dmd2.Method


class Record:
    """Stage 1 mixin: s' <- teacher, DSM on the frozen G0's samples; saves the path."""

    def __init__(self, config):
        super().__init__(config)
        self.d = config.disback
        self.loss = "vsd" if self.d.base == "vsd" else "dmd"
        if not self.d.fit_steps and not (self.c.init_from_teacher and self.teacher.params):
            raise ValueError("disback: s' cannot start as a copy of this teacher (no weights, e.g. analytic, "
                             "or dmd2.init_from_teacher=False): set disback.fit_steps > 0")
        self.teacher_host = to_host(self.teacher.params) if self.teacher.params else None

    def rules(self):
        return {"fit": self.fit_step, "record": self.critic_step}

    def fit_step(self, state, batch, frozen):
        """DSM of s' on the data (the teacher's distribution), no GAN."""
        return self.critic_step(state, batch, frozen, x=batch["x"], labels=method.onehot(batch, self.num_classes),
                                gan=False)

    def schedule(self, step):
        return "fit" if step < self.d.fit_steps else "record"

    def host_step(self, step, state, workdir):
        i, r = divmod(step - self.d.fit_steps, self.d.record_every)
        if i >= 1 and r == 0:
            params = to_host(state.params["fake"])
            if jax.process_index() == 0:
                save_ckpt(workdir, i, params, self.teacher_host, step)
        return None


class Backtrack:
    """Stage 2 mixin: G <- G0, fake <- s'_N; the target walks the path back to the teacher."""

    def run_steps(self, config):  # the generator trains here only: its cool-down ends with this stage
        return stage_steps(config)[1]

    def __init__(self, config, prior):
        super().__init__(config)
        self.d = config.disback
        self.loss = "vsd" if self.d.base == "vsd" else "dmd"
        _, _, self.switch_at = stage_steps(config)
        self.N = self.d.num_ckpts
        self.start = {n: prior["record"].params[n] for n in dmd2.NETS}  # G0, s'_N and the head
        self.teacher_host = to_host(self.teacher.params) if self.teacher.params else None
        self.active = None
        self.frozen = self.frozen_for(0, None)

    def init(self, rng, batch):
        p = {n: jax.tree.map(jnp.array, self.start[n]) for n in dmd2.NETS}
        return method.new_state(rng, p, self.txs, ema=("gen",), extra=self.init_extra())

    def target_index(self, step):
        return max(self.N - 1 - sum(step >= a for a in self.switch_at), 0)

    def frozen_for(self, i, target):
        return {"teacher": self.teacher.params, "target": target, "target_index": np.int32(i)}

    def target(self, frozen, x, sigma, labels, dropout_key=None):
        if frozen["target"] is None:  # index 0: the teacher itself
            return super().target(frozen, x, sigma, labels, dropout_key)
        return self.fake(frozen["target"], x, sigma, labels, dropout_key=dropout_key)

    def host_step(self, step, state, workdir):
        """Load the scheduled target when it changes; nothing else keeps a path checkpoint."""
        i = self.target_index(step)
        if i == self.active:
            return None
        target = None if i == 0 else load_ckpt(workdir, i, state.params["fake"], self.teacher_host)
        self.active = i
        return self.frozen_for(i, target)

    def rules(self):
        def tagged(rule):
            def run(state, batch, frozen):
                state, m = rule(state, batch, frozen)
                t = frozen["target"] if frozen["target"] is not None else frozen["teacher"]
                return state, {**m, "disback/target": frozen["target_index"],
                               "disback/target_norm": optax.tree.norm(t) if jax.tree.leaves(t) else jnp.float32(0)}
            return run
        return {k: tagged(r) for k, r in super().rules().items()}


def make_stage(mixin, config, *args):
    cls = type(f"{mixin.__name__}_{config.disback.base}", (mixin, base_class(config)), {})
    return cls(config, *args)


class Method(method.Method):
    nfe_unit = dmd2.Method.nfe_unit  # sampling is the last stage's: a dmd2 / fdistill generator

    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        self.n1, self.n2, _ = stage_steps(config)

    def stages(self):
        c = self.config
        return [method.Stage("record", self.n1, lambda prior: make_stage(Record, c)),
                method.Stage("backtrack", self.n2, lambda prior: make_stage(Backtrack, c, prior))]
