"""Building blocks shared by the Evolved Transformer and the plain Transformer.

Every parameter is created with logical axis names (``embed``, ``mlp``, ``heads``, ``kv``,
``vocab``, ``conv_width``, ``conv_in``, ``conv_out``) and every block output is constrained to
``(batch, length, embed)``; ``partitioning.py`` maps those names onto a device mesh, so nothing
here knows about devices.

Incremental decoding keeps its state in Flax's ``cache`` collection, next to the layer that reads
it: causal attentions append each step's keys/values, encoder attentions keep the keys/values of
the context, and ``cached_rows`` keeps the rows a causal conv still needs. The cache is sized by
the first call (``decoding.init_cache`` evaluates it for shapes only) and starts as zeros, which
for the conv rows is exactly the causal zero padding.

Masking contract: ``segment_ids`` is ``[batch, length]`` int, 0 for padding and 1, 2, ... for the
examples packed into a row. A conv tap or an attention key is visible from a query row only when
both rows carry the same non-zero segment id, so a packed row computes exactly what its examples
compute alone, and padding never leaks into real rows.
"""
from typing import Literal, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from meena_jax.config import ModelConfig

EMBED = ("batch", "length", "embed")

glorot = nn.initializers.glorot_uniform()


def glorot_in_out(in_axis, out_axis):
  """Glorot-uniform over a kernel whose input and output span several axes: the values a
  dense layer of the flattened shape would get, but created in the kernel's own shape so its
  logical axis names apply (``nn.DenseGeneral`` initialises the flat 2-D kernel)."""
  return nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=in_axis,
                                          out_axis=out_axis)
zeros = nn.initializers.zeros_init()
ones = nn.initializers.ones_init()


# Cached keys and values, heads-major (``heads_major``): split by batch and by heads.
CACHE_KV = ("batch", "heads", "length", "kv")


def constrain(x, axes: Sequence[str] = EMBED):
  """Pins an activation's logical axes. Inert on one device (neither a mesh nor axis rules in
  scope); with only one of the two in scope it would be silently inert too, so that raises:
  a program runs inside ``partitioning.activate(mesh)``, which enters both."""
  has_mesh = not jax.sharding.get_abstract_mesh().empty
  has_rules = bool(nn.get_logical_axis_rules())
  if has_mesh != has_rules:
    raise ValueError(f"activation constraint {tuple(axes)} with "
                     f"{'a mesh but no axis rules' if has_mesh else 'axis rules but no mesh'} "
                     f"in scope; enter partitioning.activate(mesh) around the call")
  return nn.with_logical_constraint(x, tuple(axes))


def dense(cfg: ModelConfig, features: int, axes: tuple[str, str], name: str,
          use_bias: bool = True) -> nn.Dense:
  """A Glorot-initialised dense layer whose kernel and bias carry logical axis names."""
  return nn.Dense(
      features, use_bias=use_bias, dtype=cfg.activation_dtype,
      param_dtype=cfg.parameter_dtype, name=name,
      kernel_init=nn.with_logical_partitioning(glorot, axes),
      bias_init=nn.with_logical_partitioning(zeros, axes[1:]))


def layer_norm(cfg: ModelConfig, axis: str, name: str) -> nn.LayerNorm:
  """Layer norm over the last axis (epsilon 1e-6, scale and bias); statistics in float32."""
  return nn.LayerNorm(
      epsilon=1e-6, dtype=cfg.activation_dtype, param_dtype=cfg.parameter_dtype, name=name,
      scale_init=nn.with_logical_partitioning(ones, (axis,)),
      bias_init=nn.with_logical_partitioning(zeros, (axis,)))


def pad_features(x, width: int):
  """Zero-fills channels on the right so branches of different widths can be summed."""
  extra = width - x.shape[-1]
  if extra < 0:
    raise ValueError(f"cannot pad {x.shape[-1]} channels down to {width}")
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])


def timing_signal(positions, channels: int, dtype):
  """Sinusoidal positions as in tensor2tensor ``get_timing_signal_1d``: [sin | cos] halves.

  ``positions`` is ``[batch, length]``; packed rows restart at 0 for every example.
  """
  num_timescales = channels // 2
  log_increment = jnp.log(1.0e4) / max(num_timescales - 1, 1)
  inv_timescales = jnp.exp(jnp.arange(num_timescales, dtype=jnp.float32) * -log_increment)
  scaled = positions.astype(jnp.float32)[..., None] * inv_timescales
  return jnp.concatenate([jnp.sin(scaled), jnp.cos(scaled)], axis=-1).astype(dtype)


# ----------------------------------------------------------------------------------------------
# Convolutions that respect segments.


def conv_offsets(width: int, causal: bool) -> range:
  """Row offsets read by taps 0..width-1: causal = ``k-1`` rows back to 0; SAME = centred.

  Tap ``i`` of a causal conv reads row ``t - (k-1) + i``, the layout of a left-zero-padded
  VALID conv, so kernels are interchangeable with tensor2tensor/Keras ones.
  """
  left = width - 1 if causal else (width - 1) // 2
  return range(-left, width - left)


def conv_taps(x, segment_ids, width: int, causal: bool) -> list:
  """Each row's receptive field as ``width`` arrays shaped like ``x``.

  Tap ``i`` of row ``t`` holds row ``t + offset_i`` when that row has the same non-zero segment
  id as row ``t``, else zeros: exactly zero padding at every example boundary. Kept as separate
  shifted arrays (not one stacked tensor) so a depthwise conv is one fused multiply-add loop.
  """
  offsets = conv_offsets(width, causal)
  length = x.shape[1]
  pad = (-offsets[0], offsets[-1])
  xp = jnp.pad(x, ((0, 0), pad, (0, 0)))
  sp = jnp.pad(segment_ids, ((0, 0), pad))
  taps = []
  for i in range(width):
    tap_segments = sp[:, i:i + length]
    visible = (tap_segments == segment_ids) & (tap_segments > 0)
    taps.append(xp[:, i:i + length] * visible[..., None].astype(x.dtype))
  return taps


class Conv1D(nn.Module):
  """A full 1-D convolution with bias (the ET encoder's width-3 branch)."""
  cfg: ModelConfig
  features: int
  width: int
  causal: bool

  @nn.compact
  def __call__(self, x, segment_ids):
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(glorot, ("conv_width", "conv_in", "conv_out")),
        (self.width, x.shape[-1], self.features), self.cfg.parameter_dtype)
    bias = self.param("bias", nn.with_logical_partitioning(zeros, ("conv_out",)),
                      (self.features,), self.cfg.parameter_dtype)
    dtype = self.cfg.activation_dtype
    taps = conv_taps(x.astype(dtype), segment_ids, self.width, self.causal)
    kernel = kernel.astype(dtype)
    return sum(tap @ kernel[i] for i, tap in enumerate(taps)) + bias.astype(dtype)


def depthwise_glorot(key, shape, dtype=jnp.float32):
  """Glorot-uniform with the fans Keras gives a ``(width, channels, 1)`` depthwise kernel
  (fan_in = width * channels, fan_out = width), as the reference implementation starts it."""
  width, channels = shape
  limit = (6.0 / (width * channels + width)) ** 0.5
  return jax.random.uniform(key, shape, dtype, -limit, limit)


class SeparableConv1D(nn.Module):
  """Depthwise conv (one ``width``-wide filter per input channel, no bias), then a pointwise
  dense with bias to ``features`` channels, as Keras/t2t ``SeparableConv1D``."""
  cfg: ModelConfig
  features: int
  width: int
  causal: bool

  @nn.compact
  def __call__(self, x, segment_ids, decode: bool = False):
    """``decode=True``: ``x`` already starts with the ``width - 1`` rows before the first output
    row (see ``cached_rows``), so the conv is VALID and ``segment_ids`` is unused."""
    depthwise = self.param(
        "depthwise_kernel",
        nn.with_logical_partitioning(depthwise_glorot, ("conv_width", "conv_in")),
        (self.width, x.shape[-1]), self.cfg.parameter_dtype)
    dtype = self.cfg.activation_dtype
    if decode:
      if not self.causal:
        raise ValueError("only causal convs decode incrementally")
      length = x.shape[1] - (self.width - 1)
      taps = [x[:, i:i + length].astype(dtype) for i in range(self.width)]
    else:
      taps = conv_taps(x.astype(dtype), segment_ids, self.width, self.causal)
    depthwise = depthwise.astype(dtype)
    y = sum(tap * depthwise[i] for i, tap in enumerate(taps))
    return dense(self.cfg, self.features, ("conv_in", "conv_out"), "pointwise")(y)


def cached_rows(module: nn.Module, name: str, x, rows: int, channels: str = "embed"):
  """``[b, t, c]`` -> ``[b, rows + t, c]``: ``x`` behind the ``rows`` rows that came before it.

  The rows live in ``module``'s ``cache`` collection as ``name`` and start as zeros (a causal
  conv's left padding); the last ``rows`` rows of the result are kept for the next call, laid
  out as ``("batch", "length", channels)`` (the logical name of ``x``'s channel axis).
  """
  cache = module.variable("cache", name, jnp.zeros, (x.shape[0], rows, x.shape[2]), x.dtype)
  window = jnp.concatenate([cache.value, x], axis=1)
  cache.value = constrain(window[:, window.shape[1] - rows:], ("batch", "length", channels))
  return window


# ----------------------------------------------------------------------------------------------
# Attention.


def attention_mask(query_segment_ids, key_segment_ids, causal: bool):
  """``[b, 1, q, k]`` bool: same non-zero segment, and ``k <= q`` when causal."""
  mask = ((query_segment_ids[:, :, None] == key_segment_ids[:, None, :])
          & (key_segment_ids[:, None, :] > 0))
  if causal:
    q_len, k_len = query_segment_ids.shape[1], key_segment_ids.shape[1]
    mask &= jnp.tril(jnp.ones((q_len, k_len), dtype=bool))
  return mask[:, None]


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention as in tensor2tensor: Q/K/V/output projections without
  bias, queries scaled by ``head_dim ** -0.5``, total Q/K/V width ``d_model``.

  When the query batch is ``g`` times the key batch (``g`` decoding candidates per context,
  contiguous), each key row serves ``g`` query rows: contexts are never copied per candidate.
  """
  cfg: ModelConfig
  num_heads: int

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, mask, deterministic: bool = True,
               decode: Optional[Literal["causal", "encoder"]] = None):
    """``decode`` (incremental decoding, ``cache`` collection mutable):

    - ``"causal"``: appends this call's keys/values to the cache and attends to every cached
      row up to each query's own; ``mask`` is ignored (decoding rows are all real).
    - ``"encoder"``: keys/values of ``inputs_kv`` are computed and cached when it is given, and
      read from the cache when it is None; ``mask`` masks the context's padding.
    """
    del deterministic  # No attention dropout in Meena; kept for a uniform sub-layer signature.
    cfg = self.cfg
    head_dim = cfg.d_model // self.num_heads

    def project(name):
      return nn.Einsum(
          (cfg.d_model, self.num_heads, head_dim), "...d,dhk->...hk", use_bias=False,
          dtype=cfg.activation_dtype, param_dtype=cfg.parameter_dtype, name=name,
          kernel_init=nn.with_logical_partitioning(glorot_in_out(0, (1, 2)),
                                                   ("embed", "heads", "kv")))

    qkv_axes = ("batch", "length", "heads", "kv")
    query = constrain(project("query")(inputs_q), qkv_axes)
    if decode == "encoder" and inputs_kv is None:
      key = self.get_variable("cache", "encoder_key")
      value = self.get_variable("cache", "encoder_value")
    else:
      key = constrain(project("key")(inputs_kv), qkv_axes)
      value = constrain(project("value")(inputs_kv), qkv_axes)
    if decode is None:
      out = jax.nn.dot_product_attention(query, key, value, mask=mask)
    else:
      if decode == "encoder" and inputs_kv is not None:
        key, value = constrain(heads_major(key), CACHE_KV), constrain(heads_major(value), CACHE_KV)
        self.put_variable("cache", "encoder_key", key)
        self.put_variable("cache", "encoder_value", value)
      elif decode == "causal":
        key, value, mask = self._append_to_cache(heads_major(key), heads_major(value))
      out = cached_attention(query, key, value, mask)
    out = nn.Einsum(
        (self.num_heads, head_dim, cfg.d_model), "...hk,hkd->...d", use_bias=False,
        dtype=cfg.activation_dtype, param_dtype=cfg.parameter_dtype, name="out",
        kernel_init=nn.with_logical_partitioning(glorot_in_out((0, 1), 2),
                                                 ("heads", "kv", "embed")))(out)
    return constrain(out)

  def _append_to_cache(self, key, value):
    """Writes ``[b, h, t, k]`` keys/values at the cache index; returns the whole cache and the
    ``[1, 1, t, max_length]`` causal mask of the ``t`` new queries."""
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    start, steps = index.value, key.shape[2]
    cached_key.value = constrain(
        jax.lax.dynamic_update_slice(cached_key.value, key, (0, 0, start, 0)), CACHE_KV)
    cached_value.value = constrain(
        jax.lax.dynamic_update_slice(cached_value.value, value, (0, 0, start, 0)), CACHE_KV)
    index.value = start + steps
    length = cached_key.value.shape[2]
    mask = jnp.arange(length)[None, :] <= start + jnp.arange(steps)[:, None]
    return cached_key.value, cached_value.value, mask[None, None]


def heads_major(x):
  """``[b, t, h, k]`` -> ``[b, h, t, k]``, the layout cached keys/values are kept in: a step's
  attention is then a batched product over leading axes, with no copy of the cache (on CPU
  the ``[b, t, h, k]`` layout made each decoding step transpose the whole cache, 17x slower)."""
  return jnp.swapaxes(x, 1, 2)


def cached_attention(query, key, value, mask):
  """Attention of ``[b, t, h, k]`` queries over ``[B, h, s, k]`` cached keys/values, ``b = g *
  B``: the ``g`` query rows sharing one key row (decoding candidates of one context, contiguous)
  are folded into the query length, so contexts are never copied per candidate. ``mask``
  broadcasts to ``[B, 1, g * t, s]``. Returns ``[b, t, h, k]``."""
  batch, length, heads, head_dim = query.shape
  groups = batch // key.shape[0]
  folded = heads_major(query).reshape(key.shape[0], groups, heads, length, head_dim)
  folded = jnp.swapaxes(folded, 1, 2).reshape(key.shape[0], heads, groups * length, head_dim)
  scores = jnp.einsum("bhqk,bhsk->bhqs", folded, key,
                      preferred_element_type=jnp.float32) * head_dim ** -0.5
  scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
  out = jnp.einsum("bhqs,bhsk->bhqk", weights, value)
  out = out.reshape(key.shape[0], heads, groups, length, head_dim)
  return jnp.transpose(out, (0, 2, 3, 1, 4)).reshape(batch, length, heads, head_dim)


def dropout(cfg: ModelConfig, x, deterministic: bool, rate: Optional[float] = None):
  """Dropout at the residual rate; draws from the ``dropout`` rng stream when training."""
  rate = cfg.dropout_rate if rate is None else rate
  return nn.Dropout(rate)(x, deterministic=deterministic)
