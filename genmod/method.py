"""The Method contract: what a method gives the shared loop, and helpers every method uses.

A method owns its networks, optimizers, update rules and sampler. The loop only calls:
``stages()``, then for each stage's method ``init``, ``rules``, ``schedule``, ``sample``,
and reads ``frozen`` (read-only inputs such as teachers or an earlier stage's state).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

Rule = Callable[..., Any]  # (state, batch, frozen) -> (state, metrics)


@flax.struct.dataclass
class TrainState:
    """Named networks, each with its own optimizer state and EMA.

    ``rng`` never changes: step ``s`` draws ``fold_in(rng, s)``, so randomness depends only
    on (seed, step) and a resumed run repeats an uninterrupted one bit for bit.
    """

    step: jax.Array
    rng: jax.Array
    params: dict
    opt: dict
    ema: dict
    extra: dict = dataclasses.field(default_factory=dict)

    def key(self, *tags):
        k = jax.random.fold_in(self.rng, self.step)
        for t in tags:
            k = jax.random.fold_in(k, t)
        return k


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage method. ``make(prior)`` builds the stage's single-stage
    method from the finished earlier stages' states ({stage name: TrainState}, read-only)."""

    name: str
    num_steps: int
    make: Callable[[dict], "Method"]


class Method:
    """Base class. Subclasses implement ``init``, ``rules`` and ``sample``."""

    def __init__(self, config, frozen=None):
        self.config = config
        self.frozen = {} if frozen is None else frozen

    # -- contract -------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        return [Stage("main", self.config.total_steps, lambda prior: self)]

    def init(self, rng, batch) -> TrainState:
        raise NotImplementedError

    def rules(self) -> dict[str, Rule]:
        raise NotImplementedError

    def schedule(self, step: int) -> str:
        """Which rule runs at ``step``: pure in the step, so resume lands in the right phase."""
        (name,) = self.rules().keys()
        return name

    def sample(self, params, keys, frozen, nfe=None):
        """Samples from ``params`` (the EMA weights), one per key in ``keys`` (each sample's
        randomness comes from its own key, so it is reproducible from its seed)."""
        raise NotImplementedError

    def sample_params(self, state: TrainState):
        """What ``sample`` gets: the EMA weights by default."""
        return state.ema

    nfe_unit: str | None = None  # what ``nfe`` counts when ``sample`` spends it as asked

    def nfe_used(self, nfe=None) -> tuple[int, str]:
        """(what ``sample(..., nfe=nfe)`` spends per sample, what that counts), so a CLI prints
        the cost it really ran (``nfe`` None: ``config.sample.nfe``). By default the request as
        is, counted in ``nfe_unit``; a sampler that spends other than asked overrides this."""
        n = nfe or self.config.sample.nfe
        if self.nfe_unit:
            return n, self.nfe_unit
        return n, f"(as requested; method {self.config.method!r} does not report its evaluations)"

    def host_step(self, step: int, state: TrainState, workdir: str):
        """Host-side hook, outside jit: the loop calls it with the state after ``step`` steps
        (at the stage's start or resume, then after every step, before that step's checkpoint).
        For file I/O a rule cannot do, e.g. recording snapshots or swapping a large read-only
        input. Returns a new ``frozen`` dict for the following steps, or None (unchanged)."""
        return None


def get_method(config, frozen=None) -> Method:
    """``config.method`` names ``genmod.methods.<name>`` or any importable module path;
    the module exposes ``Method``. New methods need no edit here."""
    name = config.method
    module = name if "." in name else f"genmod.methods.{name}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name not in (module, module.rsplit(".", 1)[0]):
            raise
        import genmod.methods as pkg

        valid = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
        from genmod.config_lib import ConfigError

        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(valid)} (or a module path)") from None
    return mod.Method(config, frozen)


# -- helpers shared by methods ----------------------------------------------------------------
def make_optimizer(cfg, batch_size: int, total_updates: int | None = None):
    """optax chain from ``config.optim.<net>``: clip -> Adam/RAdam (+ decoupled weight decay)
    -> lr with linear warm-up and, with ``cooldown_frac`` > 0 (absent: 0), a linear cool-down to
    0 over that fraction of the net's ``total_updates`` (the method says how many its schedule
    gives the net), both counted in this net's own updates; wrapped by ``apply_if_finite``
    (NaN/inf steps skipped and counted). The cool-down makes the final iterate a converged one,
    not one draw of a constant-lr random walk (issue #16's final-vs-best checkpoints)."""
    warmup = int(cfg.get("warmup_steps", 0) or 0) or -(-int(cfg.get("warmup_img", 0) or 0) // batch_size)
    lr = optax.linear_schedule(0.0, cfg.lr, warmup) if warmup > 0 else optax.constant_schedule(cfg.lr)
    frac = float(cfg.get("cooldown_frac", 0) or 0)
    if frac > 0:
        if total_updates is None:
            raise ValueError("optim cooldown_frac: this method does not say how many updates its nets get")
        n = max(int(round(frac * total_updates)), 1)
        start = max(total_updates - n, warmup)
        lr = optax.join_schedules([lr, optax.linear_schedule(cfg.lr, 0.0, total_updates - start)], [start])
    parts = [optax.clip_by_global_norm(cfg.clip)] if cfg.get("clip") else []
    name = cfg.get("name", "adam")
    if name not in ("adam", "radam"):
        raise ValueError(f"unknown optimizer {name!r}: use adam or radam")
    scale = optax.scale_by_radam if name == "radam" else optax.scale_by_adam
    parts.append(scale(b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8)))
    if cfg.get("weight_decay"):  # decoupled (AdamW) decay
        parts.append(optax.add_decayed_weights(cfg.weight_decay))
    parts.append(optax.scale_by_learning_rate(lr))
    tx = optax.apply_if_finite(optax.chain(*parts), max_consecutive_errors=int(1e9))
    return tx, lr


def ema_decay(step, batch_size, halflife_img, rampup=None):
    """beta = 0.5 ** (batch / half-life), half-life in images (batch-size invariant), capped
    at ``rampup`` x images seen so far (EDM)."""
    h = jnp.asarray(halflife_img, jnp.float32)
    if rampup:
        h = jnp.minimum(h, rampup * (step + 1).astype(jnp.float32) * batch_size)
    return 0.5 ** (batch_size / jnp.maximum(h, 1e-8))


def apply_update(state: TrainState, name: str, grads, tx, lr_fn, ema_beta=None):
    """Optimizer step on network ``name`` (and its EMA). Returns (state, metrics)."""
    params, opt = state.params[name], state.opt[name]
    updates, opt = tx.update(grads, opt, params)
    new = optax.apply_updates(params, updates)
    sp = {**state.params, name: new}
    so = {**state.opt, name: opt}
    se = state.ema
    if ema_beta is not None and name in state.ema:
        se = {**se, name: optax.incremental_update(new, se[name], 1.0 - ema_beta)}
    metrics = {f"{name}/grad_norm": optax.tree.norm(grads), f"{name}/lr": lr_fn(update_count(state.opt[name])),
               f"{name}/skipped": 1 - opt.last_finite.astype(jnp.int32),
               f"{name}/bad_streak": opt.notfinite_count}
    return state.replace(params=sp, opt=so, ema=se), metrics


def update_count(opt) -> jax.Array:
    """Updates applied so far to this net (the Adam count; skipped steps do not count)."""
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
    return next(s for s in jax.tree.leaves(opt, is_leaf=is_adam) if is_adam(s)).count


def ode_nfe_used(nfe: int, solver: str) -> tuple[int, str]:
    """``Method.nfe_used`` of an ODE sampler: Heun spends 2N - 1 calls on N steps (its last step
    is Euler), so an even request runs one call less (10 -> 9); Euler grids spend it as asked."""
    if solver == "heun":
        return 2 * ((nfe + 1) // 2) - 1, "network evaluations (Heun: 2 per step, the last step Euler)"
    return nfe, "network evaluations (Euler)"


def finish_step(state: TrainState, metrics: dict) -> tuple[TrainState, dict]:
    return state.replace(step=state.step + 1), metrics


def new_state(rng, params: dict, txs: dict, ema=(), extra=None) -> TrainState:
    """A fresh TrainState: optimizer states for the nets in ``txs``, EMAs for ``ema``."""
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, params=params,
                      opt={k: tx.init(params[k]) for k, tx in txs.items()},
                      ema={k: jax.tree.map(jnp.copy, params[k]) for k in ema}, extra=extra or {})


def sample_labels(keys, num_classes):
    """One-hot class per sample, drawn from the sample's own key (None if unconditional)."""
    if not num_classes:
        return None
    lab = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, num_classes))(keys)
    return jax.nn.one_hot(lab, num_classes)


def onehot(batch, num_classes):
    """Class labels as one-hot vectors (what the backbones take), or None."""
    if not num_classes or "label" not in batch:
        return None
    return jax.nn.one_hot(batch["label"], num_classes)
