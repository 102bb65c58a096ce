"""The Flax ET blocks against an independent NumPy reference written from the spec.

The reference follows `shared/spec/evolved_transformer_and_meena.md` literally, one example at a
time in float64: padding rows are zeroed before every conv, SAME convs pad (k-1)//2 zeros on the
left, causal convs k-1, attention masks padding keys. It shares no code with `meena_jax`.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from meena_jax import layers
from meena_jax.evolved_transformer import (EvolvedTransformerDecoderBlock,
                                           EvolvedTransformerEncoderBlock)
from tests.conftest import TINY

CFG = dataclasses.replace(TINY, dropout_rate=0.0)
D = CFG.d_model


# ----------------------------------------------------------------------------- NumPy reference
def ln(x, p):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def linear(x, p):
  return x @ p["kernel"] + p.get("bias", 0.0)


def relu(x):
  return np.maximum(x, 0.0)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def pad_to(x, width):
  return np.concatenate([x, np.zeros(x.shape[:-1] + (width - x.shape[-1],))], axis=-1)


def zero_pad_rows(x, valid, width, causal):
  """Zeroes padding rows, then pads the time axis as a SAME or causal conv does."""
  x = x * valid[:, None]
  left = width - 1 if causal else (width - 1) // 2
  return np.concatenate([np.zeros((left, x.shape[1])), x,
                         np.zeros((width - 1 - left, x.shape[1]))])


def conv(x, p, valid, causal):
  """Full conv: kernel [k, c_in, c_out] and bias."""
  width = p["kernel"].shape[0]
  xp = zero_pad_rows(x, valid, width, causal)
  out = np.stack([sum(xp[t + i] @ p["kernel"][i] for i in range(width))
                  for t in range(x.shape[0])])
  return out + p["bias"]


def separable_conv(x, p, valid, causal):
  """Depthwise [k, c] (no bias), then pointwise dense with bias."""
  kernel = p["depthwise_kernel"]
  width = kernel.shape[0]
  xp = zero_pad_rows(x, valid, width, causal)
  depthwise = np.stack([sum(xp[t + i] * kernel[i] for i in range(width))
                        for t in range(x.shape[0])])
  return linear(depthwise, p["pointwise"])


def attention(xq, xkv, p, mask):
  """mask [q, k] bool. Q/K/V/O without bias, queries scaled by head_dim ** -0.5."""
  q = np.einsum("tc,chd->htd", xq, p["query"]["kernel"])
  k = np.einsum("sc,chd->hsd", xkv, p["key"]["kernel"])
  v = np.einsum("sc,chd->hsd", xkv, p["value"]["kernel"])
  scores = np.einsum("htd,hsd->hts", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(mask[None], scores, -1e30)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("hts,hsd,hdc->tc", weights, v, p["out"]["kernel"])


def encoder_block(x, p, valid):
  n = ln(x, p["glu_norm"])
  x = x + linear(n, p["glu_values"]) * sigmoid(linear(n, p["glu_gates"]))
  n = ln(x, p["conv_norm"])
  left = relu(linear(n, p["conv_left"]))
  right = relu(conv(n, p["conv_right"], valid, causal=False))
  z = ln(left + pad_to(right, 4 * D), p["conv_mid_norm"])
  z = separable_conv(z, p["conv_out"], valid, causal=False)
  x = x + pad_to(z, D)
  n = ln(x, p["attention_norm"])
  x = x + attention(n, n, p["self_attention"], np.outer(valid, valid) > 0)
  n = ln(x, p["ffn_norm"])
  return x + linear(relu(linear(n, p["ffn_in"])), p["ffn_out"])


def decoder_block(y, enc, p, dec_valid, enc_valid):
  causal = np.tril(np.ones((len(y), len(y)))) * dec_valid[None, :] > 0
  cross = np.ones((len(y), 1)) * enc_valid[None, :] > 0
  n = ln(y, p["parallel_attention_norm"])
  y = (y + attention(n, n, p["parallel_self_attention"], causal)
       + attention(n, enc, p["parallel_encoder_attention"], cross))
  n = ln(y, p["conv_norm"])
  left = relu(separable_conv(n, p["conv_left"], dec_valid, causal=True))
  right = separable_conv(n, p["conv_right"], dec_valid, causal=True)
  z = ln(left + pad_to(right, 2 * D), p["conv_mid_norm"])
  y = y + separable_conv(z, p["conv_out"], dec_valid, causal=True)
  n = ln(y, p["self_attention_norm"])
  y = y + attention(n, n, p["self_attention"], causal)
  n = ln(y, p["encoder_attention_norm"])
  y = y + attention(n, enc, p["encoder_attention"], cross)
  n = ln(y, p["ffn_norm"])
  h = linear(n, p["ffn_in"])
  h = ln(h * sigmoid(h), p["ffn_mid_norm"])
  return y + linear(h, p["ffn_out"])


# ----------------------------------------------------------------------------- comparisons
@jax.jit
def randomized(params, seed):
  """Every parameter (layer-norm scales and biases included) perturbed, so none is trivial."""
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def as_numpy(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


LENGTHS = [11, 7]  # Two examples of a batch: the second is padded from row 7 on.
T = 11


def segments(lengths, total):
  return jnp.asarray([[1] * n + [0] * (total - n) for n in lengths], jnp.int32)


def test_encoder_block_matches_numpy_reference():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, T, D)), jnp.float32)
  seg = segments(LENGTHS, T)
  block = EvolvedTransformerEncoderBlock(CFG)
  mask = layers.attention_mask(seg, seg, causal=False)
  params = randomized(nn.unbox(jax.jit(block.init)(jax.random.key(1), x, seg, mask))["params"], 2)
  got = np.asarray(block.apply({"params": params}, x, seg, mask))
  p = as_numpy(params)
  for b, n in enumerate(LENGTHS):
    want = encoder_block(np.asarray(x[b], np.float64), p, np.asarray(seg[b], np.float64))
    np.testing.assert_allclose(got[b, :n], want[:n], rtol=1e-5, atol=1e-5)


def test_decoder_block_matches_numpy_reference():
  rng = np.random.default_rng(1)
  dec_len = 9
  y = jnp.asarray(rng.normal(size=(2, dec_len, D)), jnp.float32)
  enc = jnp.asarray(rng.normal(size=(2, T, D)), jnp.float32)
  enc_seg = segments(LENGTHS, T)
  dec_seg = segments([9, 6], dec_len)
  self_mask = layers.attention_mask(dec_seg, dec_seg, causal=True)
  cross_mask = layers.attention_mask(dec_seg, enc_seg, causal=False)
  block = EvolvedTransformerDecoderBlock(CFG)
  args = (y, enc, dec_seg, self_mask, cross_mask)
  params = randomized(nn.unbox(jax.jit(block.init)(jax.random.key(3), *args))["params"], 4)
  got = np.asarray(block.apply({"params": params}, *args))
  p = as_numpy(params)
  assert p["parallel_self_attention"]["query"]["kernel"].shape[1] == 8  # max(min(2h, 16), h)
  for b, n in enumerate([9, 6]):
    want = decoder_block(np.asarray(y[b], np.float64), np.asarray(enc[b], np.float64), p,
                         np.asarray(dec_seg[b], np.float64), np.asarray(enc_seg[b], np.float64))
    np.testing.assert_allclose(got[b, :n], want[:n], rtol=1e-5, atol=1e-5)
