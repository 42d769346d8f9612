"""Song et al. U-Nets (DDPM++ / NCSN++) in Flax linen, NHWC.

A port of the ``SongUNet`` family as configured in EDM (Karras et al. 2022, NVlabs/edm
``training/networks.py``), which re-implements the DDPM++ and NCSN++ networks of
"Score-Based Generative Modeling through Stochastic Differential Equations". The
architecture (layers, channel counts, resampling filters, skip connections, attention
layout, embedding) is reproduced exactly, so parameter counts equal the PyTorch
originals and a PyTorch state dict maps onto this parameter tree one-to-one:

* module names mirror EDM's keys: ``enc.32x32_block0.conv0.weight`` lives at
  ``params['enc_32x32_block0']['conv0']['kernel']``;
* conv kernels are HWIO (PyTorch OIHW -> ``w.transpose(2, 3, 1, 0)``), dense kernels are
  (in, out) (PyTorch (out, in) -> ``w.T``), GroupNorm weight/bias -> ``scale``/``bias``;
* the attention ``qkv`` output channels keep EDM's interleaved (channel, {q,k,v}) order,
  so no permutation is needed when porting weights.

Initialisation follows EDM: every weight is xavier-uniform (uniform on
``+-gain * sqrt(6 / (fan_in + fan_out))`` with fans that include the kernel's receptive
field), with gain 1 for ordinary layers, ``sqrt(0.2)`` for the attention ``qkv`` conv and
``1e-5`` for the "init_zero" layers (``conv1`` of every block, the attention ``proj``, and
the final ``aux_conv`` output convs); every bias starts at zero; GroupNorm scale 1, bias 0.
These are implemented with ``variance_scaling(gain**2, 'fan_avg', 'uniform')``, which is
exactly the same distribution. Differences from the original, all deliberate:

* random streams differ (JAX PRNG vs torch), so the initial values are not bit-identical;
* the NCSN++ Fourier-feature frequencies (a non-trainable *buffer* drawn from
  ``torch.randn`` in EDM) are a constant derived from ``numpy.random.RandomState(0)``
  (see :func:`fourier_freqs`), so they are not stored in ``params`` (keeping parameter
  counts equal to PyTorch's ``parameters()``) yet are reproducible across JAX versions.
  Porting an EDM NCSN++ checkpoint exactly therefore needs these frequencies to match;
  they are the only state not carried by ``params``, so an import passes them as the
  ``fourier_freqs`` field (genmod.edm_pickle does);
* ``class_labels=None`` with ``label_dim > 0`` is treated as all-zero labels (what EDM's
  preconditioners pass) and ``augment_labels=None`` with ``augment_dim > 0`` as zeros,
  which is identical to EDM skipping ``map_augment`` (that layer has no bias); this keeps
  the parameter tree independent of how ``init`` is called;
* with ``dtype=bfloat16`` the convolutions, group norms and attention matmuls run in
  bf16 (softmax logits in float32, as in EDM's ``AttentionOp``); the noise/label mapping
  network and each block's ``affine`` run in float32 and are cast afterwards, as happens
  in EDM where the noise labels stay float32 under fp16. Parameters stay float32 and the
  output is returned as float32.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genmod.nets import onednn
from genmod.nets.conv import live, tangent_sum

_FOURIER_SEED = 0


# --------------------------------------------------------------------------------------
# Initialisers and resampling helpers.


def xavier_uniform(gain: float = 1.0):
    """EDM's ``weight_init(mode='xavier_uniform') * gain``: U(+-gain*sqrt(6/(fan_in+fan_out)))."""
    return nn.initializers.variance_scaling(gain * gain, "fan_avg", "uniform")


def edm_init(mode: str, fan_in: int, fan_out: int, gain: float = 1.0):
    """EDM's ``weight_init(shape, mode, fan_in, fan_out) * gain`` with explicit fans, so a bias
    (whose shape does not carry them) is drawn like its layer's weight (ADM's init_bias)."""
    bounds = {"xavier_uniform": np.sqrt(6 / (fan_in + fan_out)), "xavier_normal": np.sqrt(2 / (fan_in + fan_out)),
              "kaiming_uniform": np.sqrt(3 / fan_in), "kaiming_normal": np.sqrt(1 / fan_in)}
    if mode not in bounds:
        raise ValueError(f"unknown init mode {mode!r}; valid: {', '.join(bounds)}")
    scale = float(bounds[mode] * gain)

    def init(key, shape, dtype=jnp.float32):
        if mode.endswith("normal"):
            return scale * jax.random.normal(key, shape, dtype)
        return scale * jax.random.uniform(key, shape, dtype, -1.0, 1.0)
    return init


def fourier_freqs(num_channels: int, scale: float, seed: int = _FOURIER_SEED) -> np.ndarray:
    """Fixed random frequencies of the NCSN++ Fourier embedding (``num_channels // 2``)."""
    rs = np.random.RandomState(seed)
    return (rs.standard_normal(num_channels // 2) * scale).astype(np.float32)


def positional_freqs(num_channels: int, max_positions: float = 10000.0, endpoint: bool = False) -> np.ndarray:
    """EDM's ``PositionalEmbedding`` frequencies (``num_channels // 2``), rounded as its float32
    torch ops round them (exponent in float32, power in float64): an imported VP network sees
    noise labels up to ~1000, where one ulp of a frequency shows in the output."""
    half = num_channels // 2
    e = np.arange(half, dtype=np.float32) / np.float32(half - (1 if endpoint else 0))
    return (np.float64(np.float32(1 / max_positions)) ** e.astype(np.float64)).astype(np.float32)


def _filter_2d(taps: Sequence[int], gain: float = 1.0) -> np.ndarray:
    f = np.asarray(taps, dtype=np.float64)
    return np.outer(f, f) / np.square(f.sum()) * gain


def _is_box(taps: Sequence[int]) -> bool:
    return tuple(taps) == (1, 1)


def _depthwise(x, f2d: np.ndarray, *, stride=1, lhs_dilation=1, pad=0):
    c = x.shape[-1]
    k = jnp.asarray(np.tile(f2d[:, :, None, None], (1, 1, 1, c)), dtype=x.dtype)  # HWIO, I=1
    return jax.lax.conv_general_dilated(
        x, k, window_strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        lhs_dilation=(lhs_dilation, lhs_dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


def downsample(x, taps: Sequence[int], pad: int | None = None):
    """Depthwise FIR filter with stride 2 (PyTorch ``conv2d(x, f, stride=2, groups=C)``).

    ``pad`` defaults to ``(len(taps) - 1) // 2`` as in EDM's unfused path."""
    pad = (len(taps) - 1) // 2 if pad is None else pad
    if _is_box(taps) and pad == 0:  # 2x2 average pooling, no conv needed
        # Strided slices, not a reduce over axes (2, 4): XLA:CPU's reduces over such size-2
        # middle axes (here, and in the upsample's backward) cost up to 77 ms a DDPM++ step.
        s = x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]
        return (s * 0.25).astype(x.dtype)
    return _depthwise(x, _filter_2d(taps), stride=2, pad=pad)


def upsample(x, taps: Sequence[int]):
    """PyTorch ``conv_transpose2d(x, 4 * f, stride=2, padding=(len(taps)-1)//2, groups=C)``."""
    pad = (len(taps) - 1) // 2
    if _is_box(taps):  # nearest-neighbour x2
        # As stacks (concatenates), whose transpose is slices and an add, not a reduce.
        b, h, w, c = x.shape
        x = jnp.stack([x, x], axis=3).reshape(b, h, 2 * w, c)
        return jnp.stack([x, x], axis=2).reshape(b, 2 * h, 2 * w, c)
    f2d = _filter_2d(taps, gain=4.0)[::-1, ::-1]  # transposed conv == dilated conv, flipped
    return _depthwise(x, np.ascontiguousarray(f2d), lhs_dilation=2, pad=len(taps) - 1 - pad)


def _conv(x, w, pad):
    """A stride-1 NHWC x HWIO convolution: on oneDNN where it is enabled (1x1 kernels stay XLA's,
    whose derivatives conv1x1 writes as dots), else XLA's."""
    use = w.shape[0] > 1 and onednn.enabled(x, w)
    return (onednn.conv if use else onednn.ref_conv)(x, w, strides=(1, 1), padding=((pad, pad), (pad, pad)))


@jax.custom_jvp
def conv1x1(x, w):
    """A 1x1 convolution whose derivatives are matmuls. The value stays a convolution (as a dot,
    the attention's strided q/k/v slices became copies), but XLA:CPU's weight-gradient
    convolution of a 1x1 kernel ran 3-5x slower than the same contraction as a dot
    (docs/benchmarks.md, "Performance"). A custom JVP, not a VJP, so forward mode (sCM and
    MeanFlow's jax.jvp) still works; reverse mode transposes the matmuls."""
    return _conv(x, w, 0)


@functools.partial(conv1x1.defjvp, symbolic_zeros=True)
def _conv1x1_jvp(primals, tangents):
    x, w = primals
    dx, dw = tangents
    # As 2-D matmuls: the transpose of a 2-D dot contracts the rows in place, while one that
    # contracts (N, H, W) made XLA:CPU copy the operand channel-major first (~40% of the step's
    # layout copies, with the producers' elementwise work fused into the strided copy).
    mm = lambda a, b: (a.reshape(-1, a.shape[-1]) @ b[0, 0]).reshape(*a.shape[:-1], b.shape[-1])
    terms = ([mm(dx, w)] if live(dx) else []) + ([mm(x, dw)] if live(dw) else [])
    y = _conv(x, w, 0)
    return y, tangent_sum(terms, y)


# --------------------------------------------------------------------------------------
# Layers.


class Conv2d(nn.Module):
    """EDM ``Conv2d``: optional FIR up/down-sampling around a (kernel x kernel) conv.

    ``kernel == 0`` means resampling only (no parameters; ``features`` must equal the
    input channels)."""

    features: int
    kernel: int
    use_bias: bool = True
    up: bool = False
    down: bool = False
    resample_filter: Sequence[int] = (1, 1)
    fused_resample: bool = False
    init_weight: float = 1.0
    init_mode: str = "xavier_uniform"  # EDM's init_mode; ADM uses kaiming_uniform
    init_bias: float = 0.0             # bias ~ weight_init * init_bias (ADM: sqrt(1/3))
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        assert not (self.up and self.down)
        cin, k = x.shape[-1], self.kernel
        x = x.astype(self.dtype)
        w = b = None
        if k:
            if self.init_mode == "xavier_uniform" and not self.init_bias:  # SongUNet (unchanged)
                w_init, b_init = xavier_uniform(self.init_weight), nn.initializers.zeros
            else:
                fans = (cin * k * k, self.features * k * k)
                w_init = edm_init(self.init_mode, *fans, self.init_weight)
                b_init = edm_init(self.init_mode, *fans, self.init_bias)
            w = self.param("kernel", w_init, (k, k, cin, self.features), jnp.float32).astype(self.dtype)
            if self.use_bias:
                b = self.param("bias", b_init, (self.features,), jnp.float32)
        else:
            assert self.features == cin, "kernel=0 (pure resampling) keeps the channel count"
        taps = tuple(self.resample_filter)
        w_pad = k // 2
        f_pad = (len(taps) - 1) // 2

        def conv(x, pad):
            return conv1x1(x, w) if k == 1 and pad == 0 else _conv(x, w, pad)

        if self.fused_resample and (self.up or self.down) and w is not None:
            if self.up:  # not used by SongUNet
                raise NotImplementedError("fused up-sampling is not implemented")
            x = downsample(conv(x, w_pad + f_pad), taps, pad=0)
        else:
            if self.up:
                x = upsample(x, taps)
            if self.down:
                x = downsample(x, taps)
            if w is not None:
                x = conv(x, w_pad)
        if b is not None:
            x = x + b.astype(self.dtype)
        return x


class GroupNorm(nn.Module):
    """``nn.GroupNorm`` (two-pass variance, float32 statistics, ``scale`` / ``bias`` params),
    with each statistic summed per channel over the pixels first and then per group: XLA:CPU
    reduces (N, H*W, C) over its middle axis 3.5-5.5x faster than (N, H, W, G, C/G) over
    (1, 2, 4) (docs/benchmarks.md, "Performance, round 3")."""

    num_groups: int
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        n, c, g = x.shape[0], x.shape[-1], self.num_groups
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape(n, -1, c)
        count = xf.shape[1] * (c // g)

        # Group -> channel expansion as a 0/1 matmul (exact at 'highest'), not a repeat: XLA
        # fused the repeat's index arithmetic into every full-size pass (GroupNorm + SiLU forward
        # + backward 1.2-1.6x slower).
        expand = np.kron(np.eye(g, dtype=np.float32), np.ones((1, c // g), np.float32))

        def group_mean(v):  # (N, M, C) -> (N, 1, C): the mean over each channel's group
            s = v.sum(axis=1).reshape(n, g, c // g).sum(axis=-1) / count
            return jnp.dot(s, expand, precision=jax.lax.Precision.HIGHEST)[:, None]

        d = xf - group_mean(xf)
        var = group_mean(d * d)
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        y = d * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
        return y.reshape(x.shape).astype(self.dtype)


def _group_norm(channels: int, eps: float, dtype, name: str):
    """EDM ``GroupNorm``: min(32, C // 4) groups."""
    return GroupNorm(num_groups=min(32, channels // 4), epsilon=eps, dtype=dtype, name=name)


class _Linear(nn.Module):
    """EDM ``Linear`` with a non-default init (params ``kernel`` (in, out) and ``bias`` as in
    ``nn.Dense``): the bias is drawn with the layer's fans, which its shape does not carry."""

    features: int
    use_bias: bool = True
    init_weight: float = 1.0
    init_mode: str = "kaiming_normal"
    init_bias: float = 0.0

    @nn.compact
    def __call__(self, x):
        fans = (x.shape[-1], self.features)
        k = self.param("kernel", edm_init(self.init_mode, *fans, self.init_weight), fans, jnp.float32)
        y = jnp.dot(x, k)
        if self.use_bias:
            y = y + self.param("bias", edm_init(self.init_mode, *fans, self.init_bias), (self.features,),
                               jnp.float32)
        return y


def dense(features: int, name: str, use_bias: bool = True, init_weight: float = 1.0,
          init_mode: str = "xavier_uniform", init_bias: float = 0.0):
    """EDM ``Linear`` in float32: ``nn.Dense`` with xavier-uniform weight and zero bias (SongUNet),
    or EDM's other inits (ADM)."""
    if init_mode == "xavier_uniform" and not init_bias:
        return nn.Dense(features, use_bias=use_bias, kernel_init=xavier_uniform(init_weight),
                        bias_init=nn.initializers.zeros, name=name)
    return _Linear(features, use_bias, init_weight, init_mode, init_bias, name=name)


class UNetBlock(nn.Module):
    """EDM ``UNetBlock`` (residual block + optional up/down-sampling and self-attention)."""

    out_channels: int
    up: bool = False
    down: bool = False
    attention: bool = False
    num_heads: int = 1
    dropout: float = 0.0
    skip_scale: float = 1.0
    eps: float = 1e-5
    resample_filter: Sequence[int] = (1, 1)
    resample_proj: bool = False
    adaptive_scale: bool = True
    init_weight: float = 1.0        # 'init'
    init_zero_weight: float = 1e-5  # 'init_zero' (conv1, proj)
    init_attn_weight: float = 1.0   # 'init_attn' (qkv)
    init_mode: str = "xavier_uniform"  # ADM: kaiming_uniform, with init_bias = init_weight
    init_bias: float = 0.0          # 'init' layers' bias (init_zero / init_attn ones: 0 / init_bias)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, emb, train: bool = False):
        cin, cout, dt = x.shape[-1], self.out_channels, self.dtype
        x = x.astype(dt)
        orig = x
        init = dict(init_weight=self.init_weight, init_mode=self.init_mode, init_bias=self.init_bias)
        init_zero = dict(init_weight=self.init_zero_weight, init_mode=self.init_mode)
        init_attn = dict(init, init_weight=self.init_attn_weight)
        x = _group_norm(cin, self.eps, dt, "norm0")(x)
        x = Conv2d(cout, 3, up=self.up, down=self.down, resample_filter=self.resample_filter,
                   dtype=dt, name="conv0", **init)(nn.silu(x))

        # The embedding path stays float32 (as in EDM) and is cast afterwards.
        params = dense(cout * (2 if self.adaptive_scale else 1), "affine", **init)(emb)
        params = params[:, None, None, :].astype(dt)
        norm1 = _group_norm(cout, self.eps, dt, "norm1")
        if self.adaptive_scale:
            scale, shift = jnp.split(params, 2, axis=-1)
            x = nn.silu(shift + norm1(x) * (scale + 1))
        else:
            x = nn.silu(norm1(x + params))

        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = Conv2d(cout, 3, dtype=dt, name="conv1", **init_zero)(x)

        skip = orig
        if cout != cin or self.up or self.down:
            kernel = 1 if (self.resample_proj or cout != cin) else 0
            skip = Conv2d(cout, kernel, up=self.up, down=self.down,
                          resample_filter=self.resample_filter, dtype=dt, name="skip", **init)(orig)
        x = (x + skip) * self.skip_scale

        if self.attention and self.num_heads:
            b, h, w, _ = x.shape
            nh = self.num_heads
            ch = cout // nh
            qkv = Conv2d(cout * 3, 1, dtype=dt, name="qkv", **init_attn)(
                _group_norm(cout, self.eps, dt, "norm2")(x))
            # EDM layout: channel index = head * (3 * ch) + c * 3 + {0: q, 1: k, 2: v}.
            qkv = qkv.reshape(b, h * w, nh, ch, 3)
            q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
            logits = jnp.einsum("bqhc,bkhc->bhqk", q.astype(jnp.float32),
                                k.astype(jnp.float32) / float(np.sqrt(ch)))
            attn = jax.nn.softmax(logits, axis=-1).astype(dt)
            a = jnp.einsum("bhqk,bkhc->bqhc", attn, v).reshape(b, h, w, cout)
            a = Conv2d(cout, 1, dtype=dt, name="proj", **init_zero)(a)
            x = (a + x) * self.skip_scale
        return x


# --------------------------------------------------------------------------------------
# The network.


def decoder_level(block, x, emb, train, skips, r, bottom, cin, cout, num_blocks, attend):
    """One decoder level of EDM's U-Nets, shared by SongUNet and ADM (they differ in which
    blocks attend, ``attend(idx)``): two ``cin``-wide blocks at the bottom (the first attends),
    elsewhere one up block, then ``num_blocks + 1`` blocks ``cout`` wide, each on a popped skip."""
    if bottom:
        x = block(cin, f"dec_{r}_in0", attention=True)(x, emb, train)
        x = block(cin, f"dec_{r}_in1")(x, emb, train)
    else:
        x = block(cin, f"dec_{r}_up", up=True)(x, emb, train)
    for idx in range(num_blocks + 1):
        x = jnp.concatenate([x, skips.pop().astype(x.dtype)], axis=-1)
        x = block(cout, f"dec_{r}_block{idx}", attention=attend(idx))(x, emb, train)
    return x


class SongUNet(nn.Module):
    """DDPM++ / NCSN++ U-Net (EDM's ``SongUNet``), NHWC.

    ``__call__(x, noise_labels, class_labels=None, augment_labels=None, *, train=False,
    return_bottleneck=False)`` with ``x`` (B, H, W, C), ``noise_labels`` (B,), one-hot
    ``class_labels`` (B, label_dim). Returns (B, H, W, out_channels) float32, or
    ``(out, bottleneck)`` where ``bottleneck`` is the float32 feature map at the lowest
    resolution after the encoder (B, H / 2**(L-1), W / 2**(L-1), model_channels *
    channel_mult[-1]). Dropout and label dropout draw from the ``'dropout'`` rng stream and
    are active only with ``train=True``. See the module docstring for init details.
    """

    img_resolution: int
    in_channels: int
    out_channels: int
    label_dim: int = 0
    augment_dim: int = 0
    model_channels: int = 128
    channel_mult: Sequence[int] = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.10
    label_dropout: float = 0.0
    embedding_type: str = "positional"  # 'positional' (DDPM++) | 'fourier' (NCSN++)
    channel_mult_noise: int = 1         # 1 for DDPM++, 2 for NCSN++
    fourier_scale: float = 16.0
    # The Fourier frequencies themselves (``channels // 2`` floats), e.g. the ``map_noise.freqs``
    # buffer of an imported EDM NCSN++; None: the seeded ``fourier_freqs`` above.
    fourier_freqs: Sequence[float] | None = None
    encoder_type: str = "standard"      # 'standard' | 'skip' | 'residual'
    decoder_type: str = "standard"      # 'standard' | 'skip'
    resample_filter: Sequence[int] = (1, 1)
    skip_scale: float = float(np.sqrt(0.5))
    dtype: Any = jnp.float32

    def _embed_noise(self, noise_labels, channels):
        """Sinusoidal noise embedding, already in EDM's [sin, cos] order (after its flip)."""
        t = noise_labels.astype(jnp.float32)
        half = channels // 2
        if self.embedding_type == "positional":  # PositionalEmbedding(endpoint=True)
            a = t[:, None] * jnp.asarray(positional_freqs(channels, endpoint=True))[None]
        else:  # FourierEmbedding
            if self.fourier_freqs is None:
                freqs = fourier_freqs(channels, self.fourier_scale)
            else:
                freqs = np.asarray(self.fourier_freqs, np.float32)
                if freqs.shape != (half,):
                    raise ValueError(f"fourier_freqs: expected {half} frequencies, got {freqs.shape}")
            freqs = freqs * np.float32(2 * np.pi)
            a = t[:, None] * jnp.asarray(freqs, jnp.float32)[None]
        return jnp.concatenate([jnp.sin(a), jnp.cos(a)], axis=-1)

    @nn.compact
    def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, *,
                 train: bool = False, return_bottleneck: bool = False):
        if self.embedding_type not in ("positional", "fourier"):
            raise ValueError(f"embedding_type must be 'positional' or 'fourier', got {self.embedding_type!r}")
        if self.encoder_type not in ("standard", "skip", "residual"):
            raise ValueError(f"encoder_type must be standard|skip|residual, got {self.encoder_type!r}")
        if self.decoder_type not in ("standard", "skip"):
            raise ValueError(f"decoder_type must be standard|skip, got {self.decoder_type!r}")
        if x.ndim != 4 or x.shape[1] != self.img_resolution or x.shape[2] != self.img_resolution:
            raise ValueError(f"expected x of shape (B, {self.img_resolution}, {self.img_resolution}, C), "
                             f"got {x.shape}")
        if self.img_resolution % (1 << (len(self.channel_mult) - 1)):
            raise ValueError("img_resolution must be divisible by 2**(len(channel_mult) - 1)")

        dt = self.dtype
        mc = self.model_channels
        emb_ch = mc * self.channel_mult_emb
        noise_ch = mc * self.channel_mult_noise
        taps = tuple(self.resample_filter)
        batch = x.shape[0]

        def dense(features, name, use_bias=True):  # float32 mapping network
            return nn.Dense(features, use_bias=use_bias, kernel_init=xavier_uniform(),
                            bias_init=nn.initializers.zeros, name=name)

        def block(cout, name, **kw):
            return UNetBlock(cout, num_heads=1, dropout=self.dropout, skip_scale=self.skip_scale,
                             eps=1e-6, resample_filter=taps, resample_proj=True,
                             adaptive_scale=False, init_weight=1.0, init_zero_weight=1e-5,
                             init_attn_weight=float(np.sqrt(0.2)), dtype=dt, name=name, **kw)

        # Mapping.
        emb = self._embed_noise(noise_labels, noise_ch)
        if self.label_dim:
            if class_labels is None:
                labels = jnp.zeros((batch, self.label_dim), jnp.float32)
            else:
                labels = class_labels.astype(jnp.float32).reshape(batch, self.label_dim)
            if train and self.label_dropout:
                u = jax.random.uniform(self.make_rng("dropout"), (batch, 1))
                labels = labels * (u >= self.label_dropout).astype(labels.dtype)
            emb = emb + dense(noise_ch, "map_label")(labels * float(np.sqrt(self.label_dim)))
        if self.augment_dim:
            aug = (jnp.zeros((batch, self.augment_dim), jnp.float32) if augment_labels is None
                   else augment_labels.astype(jnp.float32))
            emb = emb + dense(noise_ch, "map_augment", use_bias=False)(aug)
        emb = nn.silu(dense(emb_ch, "map_layer0")(emb))
        emb = nn.silu(dense(emb_ch, "map_layer1")(emb))

        # Encoder.
        x = x.astype(dt)
        aux = x
        skips = []
        cout = self.in_channels
        for level, mult in enumerate(self.channel_mult):
            r = f"{self.img_resolution >> level}x{self.img_resolution >> level}"
            res = self.img_resolution >> level
            if level == 0:
                cout = mc
                x = Conv2d(cout, 3, dtype=dt, name=f"enc_{r}_conv")(x)
                skips.append(x)
            else:
                x = block(cout, f"enc_{r}_down", down=True)(x, emb, train)
                skips.append(x)
                if self.encoder_type == "skip":
                    aux = downsample(aux, taps)  # EDM 'aux_down' (kernel 0: no parameters)
                    x = x + Conv2d(cout, 1, dtype=dt, name=f"enc_{r}_aux_skip")(aux)
                    skips[-1] = x
                elif self.encoder_type == "residual":
                    y = Conv2d(cout, 3, down=True, resample_filter=taps, fused_resample=True,
                               dtype=dt, name=f"enc_{r}_aux_residual")(aux)
                    x = aux = (x + y) / float(np.sqrt(2))
                    skips[-1] = x
            for idx in range(self.num_blocks):
                cout = mc * mult
                x = block(cout, f"enc_{r}_block{idx}", attention=res in self.attn_resolutions)(
                    x, emb, train)
                skips.append(x)
        bottleneck = x

        # Decoder.
        aux = None
        last = len(self.channel_mult) - 1
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            r = f"{self.img_resolution >> level}x{self.img_resolution >> level}"
            res = self.img_resolution >> level
            x = decoder_level(block, x, emb, train, skips, r, level == last, cout, mc * mult, self.num_blocks,
                              lambda idx: idx == self.num_blocks and res in self.attn_resolutions)
            cout = mc * mult
            if self.decoder_type == "skip" or level == 0:
                if self.decoder_type == "skip" and level < last:
                    aux = upsample(aux, taps)  # EDM 'aux_up' (kernel 0: no parameters)
                tmp = _group_norm(cout, 1e-6, dt, f"dec_{r}_aux_norm")(x)
                tmp = Conv2d(self.out_channels, 3, init_weight=1e-5, dtype=dt,
                             name=f"dec_{r}_aux_conv")(nn.silu(tmp))
                aux = tmp if aux is None else tmp + aux
        assert not skips
        out = aux.astype(jnp.float32)
        if return_bottleneck:
            return out, bottleneck.astype(jnp.float32)
        return out


# --------------------------------------------------------------------------------------
# Weight porting.


def params_from_torch_state_dict(state_dict) -> tuple[dict, np.ndarray | None]:
    """Map an EDM ``SongUNet`` (or ``DhariwalUNet``: genmod.nets.adm) state dict (name ->
    array-like, optionally prefixed ``model.`` as inside EDM's preconditioners) to this
    module's ``params`` tree.

    Returns ``(params, fourier_freqs)``; the latter is the NCSN++ ``map_noise.freqs`` buffer
    (or None), which this module does not store: the port is exact only where it equals
    :func:`fourier_freqs` (e.g. when the torch buffer was set from it). ``resample_filter``
    buffers are constants here and are dropped. Needs only numpy (no torch import)."""
    params: dict = {}
    freqs = None
    for key, val in state_dict.items():
        val = np.asarray(val.detach().cpu().numpy() if hasattr(val, "detach") else val,
                         dtype=np.float32)
        parts = key.split(".")
        if parts[0] == "model":
            parts = parts[1:]
        if parts[-1] == "resample_filter":
            continue
        if parts[-1] == "freqs":
            freqs = val
            continue
        if parts[0] in ("enc", "dec"):
            parts = [f"{parts[0]}_{parts[1]}"] + parts[2:]
        *path, leaf = parts
        if val.ndim == 4:  # conv OIHW -> HWIO
            leaf, val = "kernel", val.transpose(2, 3, 1, 0)
        elif val.ndim == 2:  # linear (out, in) -> (in, out)
            leaf, val = "kernel", val.T
        elif leaf == "weight":  # only GroupNorm has 1-D weights
            leaf = "scale"
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = val
    return params, freqs


# --------------------------------------------------------------------------------------
# Presets (kwargs for SongUNet besides img_resolution / in_channels / out_channels /
# label_dim). EDM's CIFAR-10 runs also set augment_dim=9 for its non-leaking augmentation
# pipeline (default --augment=0.12); that adds a 9 x 128 bias-free ``map_augment`` layer,
# which the configs that run the pipeline (genmod.augment) add themselves (edm_cifar10).


def ddpmpp_cifar10() -> dict:
    """EDM ``--arch=ddpmpp`` (VP) on CIFAR-10: 55.73M params class-conditional."""
    return dict(model_channels=128, channel_mult=(2, 2, 2), channel_mult_emb=4, num_blocks=4,
                attn_resolutions=(16,), dropout=0.13, embedding_type="positional",
                channel_mult_noise=1, encoder_type="standard", decoder_type="standard",
                resample_filter=(1, 1))


def ncsnpp_cifar10() -> dict:
    """EDM ``--arch=ncsnpp`` (VE) on CIFAR-10: 56.40M params class-conditional."""
    return dict(model_channels=128, channel_mult=(2, 2, 2), channel_mult_emb=4, num_blocks=4,
                attn_resolutions=(16,), dropout=0.13, embedding_type="fourier",
                channel_mult_noise=2, fourier_scale=16.0, encoder_type="residual",
                decoder_type="standard", resample_filter=(1, 3, 3, 1))


def adm_imagenet64() -> dict:
    """ADM-width SongUNet standing in for EDM's ImageNet-64 ADM [unverified]; the real ADM is
    ``net.arch=adm`` (genmod.nets.adm, what imported EDM ImageNet teachers use)."""
    return dict(model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3,
                attn_resolutions=(32, 16, 8), dropout=0.1, embedding_type="positional", channel_mult_noise=1,
                encoder_type="standard", decoder_type="standard", resample_filter=(1, 1))
