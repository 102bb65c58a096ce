"""The Meena seq2seq model: shared embedding, encoder stack, decoder stack, tied logits, loss.

Input: a SeqIO ``EncDecFeatureConverter`` batch (``encoder_input_tokens``,
``decoder_input_tokens``, ``decoder_target_tokens``, ``decoder_loss_weights``, and when packed
``*_segment_ids`` / ``*_positions``). Token 0 is padding (and the decoder's start token), 1 is EOS.
Output: ``[batch, target_length, vocab]`` logits, and ``loss_fn`` turns them into a summed
cross-entropy and the number of target tokens it covers. ``decode_step`` is the incremental
decoder ``decoding.py`` drives: one step's tokens in, that step's logits out, the per-layer state
in Flax's ``cache`` collection (layout in ``layers.py`` and ``evolved_transformer.py``).
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from meena_jax import layers
from meena_jax.config import ModelConfig
from meena_jax.evolved_transformer import (EvolvedTransformerDecoderBlock,
                                           EvolvedTransformerEncoderBlock)
from meena_jax.transformer import TransformerDecoderBlock, TransformerEncoderBlock

BLOCKS = {
    "evolved": (EvolvedTransformerEncoderBlock, EvolvedTransformerDecoderBlock),
    "transformer": (TransformerEncoderBlock, TransformerDecoderBlock),
}


REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "matmuls": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _blocks(cfg: ModelConfig):
  """The encoder and decoder block classes, wrapped in ``nn.remat`` with ``cfg.remat``'s policy
  (the flags after the arrays, ``deterministic`` and ``decode``, are static)."""
  encoder_block, decoder_block = BLOCKS[cfg.block_type]
  if cfg.remat == "none":
    return encoder_block, decoder_block
  policy = REMAT_POLICIES[cfg.remat]
  return (nn.remat(encoder_block, policy=policy, static_argnums=(4,)),
          nn.remat(decoder_block, policy=policy, static_argnums=(6, 7)))


def _default_positions(tokens):
  return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)


class Seq2Seq(nn.Module):
  """Encoder-decoder with one embedding shared by encoder input, decoder input and output."""
  cfg: ModelConfig

  def setup(self):
    cfg = self.cfg
    encoder_block, decoder_block = _blocks(cfg)
    self.embedding = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.activation_dtype,
        param_dtype=cfg.parameter_dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=cfg.d_model ** -0.5), ("vocab", "embed")))
    self.encoder_blocks = [encoder_block(cfg, name=f"encoder_{i}")
                           for i in range(cfg.num_encoder_layers)]
    self.encoder_norm = layers.layer_norm(cfg, "embed", "encoder_norm")
    self.decoder_blocks = [decoder_block(cfg, name=f"decoder_{i}")
                           for i in range(cfg.num_decoder_layers)]
    self.decoder_norm = layers.layer_norm(cfg, "embed", "decoder_norm")
    self.embedding_dropout = nn.Dropout(cfg.dropout_rate)

  def _embed(self, tokens, positions, deterministic):
    """Token embedding times sqrt(d), plus the sinusoidal timing signal, then dropout."""
    cfg = self.cfg
    x = self.embedding(tokens) * jnp.asarray(cfg.d_model ** 0.5, cfg.activation_dtype)
    x = x + layers.timing_signal(positions, cfg.d_model, cfg.activation_dtype)
    return layers.constrain(self.embedding_dropout(x, deterministic=deterministic))

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None,
             deterministic: bool = True):
    """``[b, s]`` tokens -> ``[b, s, d]`` encodings (after the final layer norm)."""
    if encoder_segment_ids is None:
      encoder_segment_ids = (encoder_input_tokens > 0).astype(jnp.int32)
    if encoder_positions is None:
      encoder_positions = _default_positions(encoder_input_tokens)
    mask = layers.attention_mask(encoder_segment_ids, encoder_segment_ids, causal=False)
    x = self._embed(encoder_input_tokens, encoder_positions, deterministic)
    for block in self.encoder_blocks:
      x = block(x, encoder_segment_ids, mask, deterministic)
    return self.encoder_norm(x)

  def decode(self, encoded, encoder_segment_ids, decoder_input_tokens,
             decoder_segment_ids=None, decoder_positions=None, deterministic: bool = True):
    """Teacher-forced decoder pass: ``[b, t]`` shifted targets -> ``[b, t, vocab]`` logits.

    ``decoder_segment_ids=None`` means every decoder row is real (decoding); training batches
    pass segments, or ``__call__`` derives them from the targets.
    """
    if decoder_segment_ids is None:
      decoder_segment_ids = jnp.ones_like(decoder_input_tokens, dtype=jnp.int32)
    if decoder_positions is None:
      decoder_positions = _default_positions(decoder_input_tokens)
    self_mask = layers.attention_mask(decoder_segment_ids, decoder_segment_ids, causal=True)
    cross_mask = layers.attention_mask(decoder_segment_ids, encoder_segment_ids, causal=False)
    y = self._embed(decoder_input_tokens, decoder_positions, deterministic)
    for block in self.decoder_blocks:
      y = block(y, encoded, decoder_segment_ids, self_mask, cross_mask, deterministic, False)
    return self._logits(y)

  def decode_step(self, encoded, encoder_segment_ids, decoder_input_tokens, decoder_positions):
    """Incremental decoding: ``[rows, t]`` tokens at ``[rows, t]`` positions -> their logits.

    Apply with ``mutable=["cache"]``. ``rows`` is a multiple ``g`` of the ``B`` contexts, the
    ``g`` candidates of one context contiguous. ``encoded`` (``[B, s, d]``) is given on the first
    call, whose encoder attentions cache its keys/values, and None afterwards;
    ``encoder_segment_ids`` (``[B, s]``) masks the context's padding on every call.
    """
    cross_mask = (encoder_segment_ids > 0)[:, None, None, :]
    y = self._embed(decoder_input_tokens, decoder_positions, deterministic=True)
    for block in self.decoder_blocks:
      y = block(y, encoded, None, None, cross_mask, True, True)  # deterministic, decode
    return self._logits(y)

  def _logits(self, y):
    """Final layer norm, then the output projection tied to the embedding."""
    y = self.decoder_norm(y)
    logits = self.embedding.attend(y.astype(self.cfg.activation_dtype))
    return layers.constrain(logits, ("batch", "length", "vocab"))

  def __call__(self, encoder_input_tokens, decoder_input_tokens,
               decoder_target_tokens=None, encoder_segment_ids=None,
               decoder_segment_ids=None, encoder_positions=None, decoder_positions=None,
               deterministic: bool = True):
    """Full teacher-forced forward pass over a (possibly packed) batch -> logits."""
    if encoder_segment_ids is None:
      encoder_segment_ids = (encoder_input_tokens > 0).astype(jnp.int32)
    if decoder_segment_ids is None and decoder_target_tokens is not None:
      # Unpacked: decoder input 0 is also the start token, so real rows are read off targets.
      decoder_segment_ids = (decoder_target_tokens > 0).astype(jnp.int32)
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                          deterministic)
    return self.decode(encoded, encoder_segment_ids, decoder_input_tokens,
                       decoder_segment_ids, decoder_positions, deterministic)


MODEL_INPUTS = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                "encoder_segment_ids", "decoder_segment_ids", "encoder_positions",
                "decoder_positions")


def model_inputs(batch: dict) -> dict:
  """The keyword arguments ``Seq2Seq.__call__`` takes from a feature-converter batch."""
  return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def loss_fn(logits, targets, weights: Optional[jnp.ndarray] = None):
  """Token-weighted cross-entropy: returns ``(sum of weighted NLL, sum of weights)``.

  A sum and a denominator rather than a mean, so perplexity over many batches (or hosts) is
  ``exp(total / count)`` and never a mean of batch means. ``weights=None`` weights every
  non-padding target 1.
  """
  if weights is None:
    weights = (targets > 0)
  weights = weights.astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  return jnp.sum(nll * weights), jnp.sum(weights)
