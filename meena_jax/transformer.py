"""Plain pre-norm Transformer blocks: the baseline Meena compares the Evolved Transformer with.

Same call signatures as the ET blocks in ``evolved_transformer.py``, so ``model.py`` swaps them by
``ModelConfig.block_type`` alone.
"""
import flax.linen as nn

from meena_jax import layers
from meena_jax.config import ModelConfig
from meena_jax.layers import constrain, dense, dropout, layer_norm


def _feed_forward(cfg: ModelConfig, x, deterministic: bool):
  n = layer_norm(cfg, "embed", "ffn_norm")(x)
  h = dropout(cfg, nn.relu(dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "ffn_in")(n)),
              deterministic)
  return dropout(cfg, dense(cfg, cfg.d_model, ("mlp", "embed"), "ffn_out")(h), deterministic)


class TransformerEncoderBlock(nn.Module):
  """Self-attention, then a ReLU feed-forward."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, segment_ids, attention_mask, deterministic: bool = True):
    del segment_ids  # Only convs need rows' segments; attention has its mask.
    cfg = self.cfg
    n = layer_norm(cfg, "embed", "attention_norm")(x)
    x = x + dropout(cfg, layers.MultiHeadAttention(cfg, cfg.num_heads, name="self_attention")(
        n, n, attention_mask, deterministic), deterministic)
    return constrain(x + _feed_forward(cfg, constrain(x), deterministic))


class TransformerDecoderBlock(nn.Module):
  """Causal self-attention, encoder attention, then a ReLU feed-forward."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, encoded, segment_ids, self_mask, cross_mask,
               deterministic: bool = True, decode: bool = False):
    """``decode=True``: attention keys/values are cached as in the ET decoder block."""
    del segment_ids
    cfg = self.cfg
    causal, cross_mode = ("causal", "encoder") if decode else (None, None)
    n = layer_norm(cfg, "embed", "self_attention_norm")(x)
    x = x + dropout(cfg, layers.MultiHeadAttention(cfg, cfg.num_heads, name="self_attention")(
        n, n, self_mask, deterministic, causal), deterministic)
    n = layer_norm(cfg, "embed", "encoder_attention_norm")(x)
    x = x + dropout(cfg, layers.MultiHeadAttention(
        cfg, cfg.num_heads, name="encoder_attention")(
            n, encoded, cross_mask, deterministic, cross_mode), deterministic)
    return constrain(x + _feed_forward(cfg, constrain(x), deterministic))
