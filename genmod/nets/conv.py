"""A 2-D convolution whose gradients stay fast inside loops on XLA:CPU.

XLA:CPU runs a convolution on Eigen (or YNNPACK) only in its canonical form, NHWC x HWIO ->
NHWC. Autodiff's input gradient reads the kernel as HWOI and its weight gradient contracts over
the batch, and the pass that rewrites such convolutions into canonical form (with transposes)
visits only the entry computation. Inside a ``lax.fori_loop`` / ``scan`` / ``cond`` body they
fall back to XLA's naive loop emitter: 3.5x slower for the input gradient and 80x for the weight
gradient (64 ch, 16x16, batch 32; ``benchmarks/conv_in_loops.py``). Langevin chains take the
energy's input gradient inside a loop (CDRL, ``genmod.langevin``): with this convolution in the
EBM, cdrl_digits' train step runs 1.9x faster on 2 cores and cdrl_cifar10's 3.4x.

``conv2d`` writes its tangent so that the transposes JAX derives are canonical themselves: the
input term declares the kernel HWOI (its transpose reads it as HWIO), the weight term lays x out
as (C, H, W, N) and the output as (H, W, N, O) (its transpose is then (C, H, W, N) x (H, W, N, O)
-> (C, kh, kw, O)). Values, gradients and JVPs equal ``lax.conv_general_dilated``'s (bitwise on
this CPU: XLA's own rewrite inserts the same transposes).
The price is forward mode inside a loop, where the tangent's convolutions are the non-canonical
ones; the U-Net (sCM and MeanFlow take its ``jax.jvp``) therefore keeps lax's convolution.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


def live(d) -> bool:
    """A tangent that is not a symbolic zero (``defjvp(..., symbolic_zeros=True)``): its term is
    computed, a zero's is skipped."""
    return not isinstance(d, jax.custom_derivatives.SymbolicZero)


def tangent_sum(terms: list, y):
    """The tangent of ``y`` from its live terms (zeros where every input tangent was zero)."""
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def conv2d(x, w, strides: tuple, padding: tuple):
    """NHWC x HWIO -> NHWC; ``padding`` is ((lo, hi), (lo, hi))."""
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)


@functools.partial(conv2d.defjvp, symbolic_zeros=True)
def _conv2d_jvp(strides, padding, primals, tangents):
    x, w = primals
    dx, dw = tangents
    terms = []
    if live(dx):  # transposes to g * flip(w) with the kernel read as HWIO
        terms.append(lax.conv_general_dilated(dx, jnp.swapaxes(w, 2, 3), strides, padding,
                                              dimension_numbers=("NHWC", "HWOI", "NHWC")))
    if live(dw):  # transposes to (C, H, W, N) x (H, W, N, O) -> (C, kh, kw, O)
        t = lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dw, (2, 0, 1, 3)), strides,
                                     padding, dimension_numbers=("CHWN", "IHWO", "HWNC"))
        terms.append(jnp.transpose(t, (2, 0, 1, 3)))
    y = conv2d(x, w, strides, padding)
    return y, tangent_sum(terms, y)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """``lax.conv_general_dilated``'s signature (flax's ``nn.Conv(conv_general_dilated=...)`` hook):
    ``conv2d`` for plain NHWC x HWIO convolutions on the CPU backend, lax's own for everything else
    (other backends, since the trap above is XLA:CPU's and this form is unmeasured there; and
    dilations, groups, other layouts or precisions)."""
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    plain = (jax.default_backend() == "cpu" and lhs.ndim == 4 and dn == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
             and feature_group_count == batch_group_count == 1 and precision is None and preferred_element_type is None
             and all(d == 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ())))
    if not plain:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    return conv2d(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))
