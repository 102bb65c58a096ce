"""Evolved Transformer blocks (So, Liang, Le 2019), as specified in
``shared/spec/evolved_transformer_and_meena.md``.

Every sub-block is pre-norm, ``x <- x + Drop(F(LN(x)))``. The encoder block has four sub-blocks
(gated linear unit, conv branches, self-attention, feed-forward), the decoder block five (parallel
self/encoder attention, causal conv branches, self-attention, encoder attention, swish
feed-forward). Both take and return ``[batch, length, d_model]``; masks come from ``model.py``.

Incremental decoding (``decode=True``, one or more new rows per call, every row real): both
causal attentions and both encoder attentions cache their keys/values (``layers.py``), and the
causal conv sub-block caches, as the spec lays it out, the last 10 rows of its layer-normed input
(the width-11 conv reads all 10, the width-7 conv the last 6) and the last 6 rows of its 2d-wide
hidden ``z`` (for the second width-7 conv).

Where the spec says "padding rows are zeroed before every conv", the segment-aware convs of
``layers.conv_taps`` already never read a padding row (nor a row of a neighbouring packed
example), which is the same thing for every real row.
"""
import flax.linen as nn
import jax

from meena_jax import layers
from meena_jax.config import ModelConfig
from meena_jax.layers import constrain, dense, dropout, layer_norm, pad_features


class EvolvedTransformerEncoderBlock(nn.Module):
  """ET encoder block: GLU, conv branches (dense 4d | width-3 conv), attention, FFN."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, segment_ids, attention_mask, deterministic: bool = True):
    cfg, d = self.cfg, self.cfg.d_model
    drop = lambda y: dropout(cfg, y, deterministic)

    # 1. Gated linear unit: two separate dense layers, values * sigmoid(gates).
    n = layer_norm(cfg, "embed", "glu_norm")(x)
    values = dense(cfg, d, ("embed", "mlp"), "glu_values")(n)
    gates = dense(cfg, d, ("embed", "mlp"), "glu_gates")(n)
    x = constrain(x + drop(values * nn.sigmoid(gates)))

    # 2. Conv branches: ReLU(dense 4d) + ReLU(width-3 conv -> d/2, padded to 4d), LN over 4d,
    #    separable width-9 conv -> d/2, padded to d.
    n = layer_norm(cfg, "embed", "conv_norm")(x)
    left = nn.relu(dense(cfg, 4 * d, ("embed", "mlp"), "conv_left")(n))
    right = nn.relu(layers.Conv1D(cfg, d // 2, 3, causal=False, name="conv_right")(
        n, segment_ids))
    z = drop(left) + drop(pad_features(right, 4 * d))
    z = layer_norm(cfg, "mlp", "conv_mid_norm")(constrain(z, ("batch", "length", "mlp")))
    z = layers.SeparableConv1D(cfg, d // 2, 9, causal=False, name="conv_out")(z, segment_ids)
    x = constrain(x + drop(pad_features(z, d)))

    # 3. Self-attention over the context.
    n = layer_norm(cfg, "embed", "attention_norm")(x)
    x = x + drop(layers.MultiHeadAttention(cfg, cfg.num_heads, name="self_attention")(
        n, n, attention_mask, deterministic))

    # 4. ReLU feed-forward.
    n = layer_norm(cfg, "embed", "ffn_norm")(x)
    h = drop(nn.relu(dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "ffn_in")(n)))
    return constrain(x + drop(dense(cfg, d, ("mlp", "embed"), "ffn_out")(h)))


LEFT_WIDTH, RIGHT_WIDTH, OUT_WIDTH = 11, 7, 7  # The decoder's causal separable convs.


class EvolvedTransformerDecoderBlock(nn.Module):
  """ET decoder block: parallel attention (h' self | h encoder), causal conv branches, causal
  self-attention, encoder attention, swish feed-forward."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, encoded, segment_ids, self_mask, cross_mask,
               deterministic: bool = True, decode: bool = False):
    """``decode=True``: rows continue the cached ones; ``encoded`` is None after the first
    call (its keys/values are cached) and ``self_mask``/``segment_ids`` are unused."""
    cfg, d = self.cfg, self.cfg.d_model
    drop = lambda y: dropout(cfg, y, deterministic)
    causal, cross_mode = ("causal", "encoder") if decode else (None, None)
    attention = lambda heads, name: layers.MultiHeadAttention(cfg, heads, name=name)
    conv = lambda features, width, name: layers.SeparableConv1D(
        cfg, features, width, causal=True, name=name)

    # 1. Causal self-attention with h' = max(min(2h, 16), h) heads beside encoder attention.
    n = layer_norm(cfg, "embed", "parallel_attention_norm")(x)
    wide = attention(cfg.decoder_self_attention_heads, "parallel_self_attention")(
        n, n, self_mask, deterministic, causal)
    cross = attention(cfg.num_heads, "parallel_encoder_attention")(
        n, encoded, cross_mask, deterministic, cross_mode)
    x = constrain(x + drop(wide) + drop(cross))

    # 2. Causal conv branches: ReLU(sep width-11 -> 2d) + sep width-7 -> d/2 padded to 2d,
    #    LN over 2d, sep width-7 -> d. Decoding reads earlier rows from the cache instead.
    n = layer_norm(cfg, "embed", "conv_norm")(x)
    left_in = right_in = n
    if decode:
      left_in = layers.cached_rows(self, "conv_input_rows", n, LEFT_WIDTH - 1)
      right_in = left_in[:, LEFT_WIDTH - RIGHT_WIDTH:]
    left = nn.relu(conv(2 * d, LEFT_WIDTH, "conv_left")(left_in, segment_ids, decode))
    right = conv(d // 2, RIGHT_WIDTH, "conv_right")(right_in, segment_ids, decode)
    z = drop(left) + drop(pad_features(right, 2 * d))
    z = layer_norm(cfg, "mlp", "conv_mid_norm")(constrain(z, ("batch", "length", "mlp")))
    if decode:
      z = layers.cached_rows(self, "conv_hidden_rows", z, OUT_WIDTH - 1, "mlp")
    z = conv(d, OUT_WIDTH, "conv_out")(z, segment_ids, decode)
    x = constrain(x + drop(z))

    # 3. Causal self-attention, h heads.
    n = layer_norm(cfg, "embed", "self_attention_norm")(x)
    x = x + drop(attention(cfg.num_heads, "self_attention")(
        n, n, self_mask, deterministic, causal))

    # 4. Encoder attention, h heads.
    n = layer_norm(cfg, "embed", "encoder_attention_norm")(x)
    x = x + drop(attention(cfg.num_heads, "encoder_attention")(
        n, encoded, cross_mask, deterministic, cross_mode))

    # 5. Swish feed-forward with a layer norm over the hidden width.
    n = layer_norm(cfg, "embed", "ffn_norm")(x)
    h = drop(jax.nn.swish(dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "ffn_in")(n)))
    h = layer_norm(cfg, "mlp", "ffn_mid_norm")(h)
    return constrain(x + drop(dense(cfg, d, ("mlp", "embed"), "ffn_out")(h)))
