"""The one model configuration: shapes, block type, dropout and dtypes.

Every module of the model reads this frozen dataclass and nothing else. gin binds its fields
(``ModelConfig.d_model = 2560`` in ``gin/models/*.gin``); validation errors therefore name the
binding a user has to fix. Dropout is switched off per call (``deterministic=True``), so train,
eval and decode share one config.
"""
import dataclasses
from typing import Literal, Optional

import jax.numpy as jnp

BLOCK_TYPES = ("evolved", "transformer")
REMAT = ("none", "full", "matmuls")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shapes of the encoder-decoder.

  Attributes:
    block_type: "evolved" (Evolved Transformer blocks) or "transformer" (plain pre-norm blocks).
    vocab_size: size of the shared input/output embedding.
    d_model: residual width ``d``.
    num_heads: attention heads ``h``; the ET decoder's first self-attention uses
      ``max(min(2h, 16), h)`` heads.
    num_encoder_layers / num_decoder_layers: stack depths.
    d_ff: feed-forward hidden width; ``None`` means ``4 * d_model``.
    dropout_rate: residual dropout (also used inside feed-forward blocks, as in tensor2tensor).
    dtype: activation dtype ("float32" or "bfloat16"); parameters live in ``param_dtype``.
    remat: what the backward pass recomputes instead of keeping from the forward pass, per
      block: "none" keeps every activation; "full" keeps only each block's input and
      recomputes the rest; "matmuls" keeps the outputs of the weight matmuls and recomputes
      the cheap elementwise work (norms, activations, masks, softmax). Larger batches fit for
      extra compute; results are unchanged.
  """
  block_type: Literal["evolved", "transformer"] = "evolved"
  vocab_size: int = 8000
  d_model: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 1
  num_decoder_layers: int = 6
  d_ff: Optional[int] = None
  dropout_rate: float = 0.1
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: Literal["none", "full", "matmuls"] = "none"

  def __post_init__(self):
    def bad(field, why):
      raise ValueError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")

    if self.block_type not in BLOCK_TYPES:
      bad("block_type", f"unknown block type; choose one of {BLOCK_TYPES}")
    for field in ("vocab_size", "d_model", "num_heads", "num_encoder_layers",
                  "num_decoder_layers"):
      if getattr(self, field) < 1:
        bad(field, "must be >= 1")
    if self.d_model % self.num_heads:
      bad("d_model", f"must be divisible by ModelConfig.num_heads={self.num_heads}")
    if self.block_type == "evolved":
      if self.d_model % 2:
        bad("d_model", "must be even: the Evolved Transformer has d_model/2-wide conv branches")
      if self.d_model % self.decoder_self_attention_heads:
        bad("d_model", f"must be divisible by the ET decoder's first self-attention heads "
            f"max(min(2h, 16), h) = {self.decoder_self_attention_heads}")
    if self.d_model % 2:
      bad("d_model", "must be even for the sinusoidal timing signal")
    if self.d_ff is not None and self.d_ff < 1:
      bad("d_ff", "must be >= 1 (or None for 4 * d_model)")
    if not 0.0 <= self.dropout_rate < 1.0:
      bad("dropout_rate", "must be in [0, 1)")
    if self.remat not in REMAT:
      bad("remat", f"choose one of {REMAT}")
    for field in ("dtype", "param_dtype"):
      if getattr(self, field) not in ("float32", "bfloat16"):
        bad(field, "must be 'float32' or 'bfloat16'")

  @property
  def mlp_dim(self) -> int:
    return self.d_ff if self.d_ff is not None else 4 * self.d_model

  @property
  def decoder_self_attention_heads(self) -> int:
    """Heads of the ET decoder's first (parallel) self-attention: ``max(min(2h, 16), h)``."""
    return max(min(2 * self.num_heads, 16), self.num_heads)

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self):
    return jnp.dtype(self.param_dtype)
