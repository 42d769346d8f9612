"""CrossFlow (Liu et al., CVPR 2025): flow matching from a source-modality latent z0 (no noise
source) to the target x1, data at t = 1. Pure math here; the method is
``genmod/methods/crossflow.py``, the command line ``genmod/crossflow_sample.py``.

Path: z_t = (1 - (1 - sigma_min) t) z0 + t x1, v* = x1 - (1 - sigma_min) z0 (``genmod.flow``).
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np


# -- Variational Encoder losses ----------------------------------------------------------------
def reparameterize(key, mu, logvar):
    """z0 = mu + exp(logvar / 2) eps: the VE's sample (also at inference: seeds matter)."""
    return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)


def kl(mu, logvar, kind="standard"):
    """Per-sample KL(N(mu, e^logvar) || N(0, I)) summed over dims (paper, weight 1e-4).
    ``official``: the CrossFlow code's variant with (0.3 mu)^6 for mu^2 (weight 1e-2): small
    means cost less, large means much more (an empirical tweak for diversity, issue #10)."""
    if kind not in ("standard", "official"):
        raise ValueError(f"unknown KL {kind!r}: use standard or official")
    m2 = mu**2 if kind == "standard" else (0.3 * mu) ** 6
    e = 0.5 * (m2 + jnp.exp(logvar) - 1.0 - logvar)
    return e.reshape(e.shape[0], -1).sum(-1)


def clip_loss(a, b, scale):
    """Symmetric InfoNCE between rows of a and b (B, D): 0.5 (CE(S, I) + CE(S^T, I)) with
    S = scale * cos(a_i, b_j). log B for unrelated features, -> 0 for aligned, separated ones."""
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True).clip(1e-8)
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True).clip(1e-8)
    s = scale * a @ b.T
    diag = jnp.diagonal(s)
    return 0.5 * ((jax.nn.logsumexp(s, 1) - diag).mean() + (jax.nn.logsumexp(s, 0) - diag).mean())


def logit_scale(s, mode="raw"):
    """The code multiplies by open_clip's log-parameterised scale as is (``raw``, ~2.66 at
    init); the paper's logits / tau with learnable tau is ``exp`` (capped at 100 as CLIP)."""
    return s if mode == "raw" else jnp.minimum(jnp.exp(s), 100.0)


# -- CFG indicator ---------------------------------------------------------------------------
def derange(key, x1, p_uncond):
    """Mark a Bernoulli(p) subset unconditional and roll the targets within it by one, so each
    marked sample gets another sample's target (a derangement; static shapes). With fewer than
    two marked samples nothing is marked, as in the CrossFlow code. Returns (x1', null)."""
    B = x1.shape[0]
    null = jax.random.bernoulli(key, p_uncond, (B,))
    n = null.sum()
    null = null & (n >= 2)
    order = jnp.argsort(~null, stable=True)  # marked samples first, in index order
    j = jnp.arange(B)
    src_pos = jnp.where(j < n, (j - 1) % jnp.maximum(n, 1), j)
    src = jnp.zeros(B, jnp.int32).at[order].set(order[src_pos])
    return x1[src], null


def indicator(null):
    """The indicator as the backbone's 2-way one-hot label: [1, 0] conditional, [0, 1] null."""
    return jax.nn.one_hot(null.astype(jnp.int32), 2)


def guided(F, w):
    """v = v_u + w (v_c - v_u) from one batched call (a Python w == 1: the conditional branch
    alone; a traced w always evaluates both). ``F(z, t, null)`` with ``null`` a (B,) bool."""
    def v(z, t):
        B = z.shape[0]
        if isinstance(w, (int, float)) and w == 1:
            return F(z, t, jnp.zeros(B, bool))
        out = F(jnp.concatenate([z, z]), t, jnp.concatenate([jnp.zeros(B, bool), jnp.ones(B, bool)]))
        vc, vu = out[:B], out[B:]
        return vu + w * (vc - vu)
    return v


# -- samplers --------------------------------------------------------------------------------
def crossflow_euler(v, z0, num_steps, sigma_min=1e-5):
    """The CrossFlow code's Euler (``ODEEulerFlowMatchingSolver``, step_in_dsigma): evaluation
    times linspace(0, 1 - sigma_min, N) (endpoint included), steps diff(linspace(sigma_min, 1,
    N + 1)). Not left-endpoint textbook Euler; kept exact to match released checkpoints."""
    ts = jnp.linspace(0.0, 1.0 - sigma_min, num_steps, dtype=z0.dtype)
    dts = jnp.diff(jnp.linspace(sigma_min, 1.0, num_steps + 1, dtype=z0.dtype))
    z, _ = jax.lax.scan(lambda z, a: (z + a[1] * v(z, a[0]), None), z0, (ts, dts))
    return z


# -- latent interpolation and arithmetic -----------------------------------------------------
def standardize(z):
    """Per-sample global (mean, std) -> (0, 1), as the CrossFlow arithmetic demo."""
    ax = tuple(range(1, z.ndim))
    return (z - z.mean(ax, keepdims=True)) / z.std(ax, keepdims=True, ddof=1)


def arithmetic(z, z_add=None, z_sub=None, alpha=1.0):
    """z + alpha (z_add - z_sub), re-standardised; alpha sets the edit strength."""
    d = (0 if z_add is None else z_add) - (0 if z_sub is None else z_sub)
    return standardize(z + alpha * d)


def lerp(za, zb, n):
    """n latents from za to zb (both included): za + (i / (n - 1)) (zb - za)."""
    a = jnp.linspace(0.0, 1.0, n).reshape((n,) + (1,) * (za.ndim - 1))
    return za[:1] + a * (zb[:1] - za[:1])


# -- embedded tokenizer ----------------------------------------------------------------------
def tokenize(texts, max_len):
    """UTF-8 bytes + 1 (0 is padding), truncated to ``max_len``: (N, L) int32 and mask."""
    tok = np.zeros((len(texts), max_len), np.int32)
    for i, s in enumerate(texts):
        b = np.frombuffer(s.encode("utf-8")[:max_len], np.uint8)
        tok[i, : len(b)] = b.astype(np.int32) + 1
    return tok, (tok > 0).astype(np.float32)

