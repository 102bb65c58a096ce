"""Invariants of the whole seq2seq model, for both block types: causality, padding and packing
invariance, finite non-zero gradients, dtypes, and the loss."""
import dataclasses
import functools

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from meena_jax.model import Seq2Seq, loss_fn, model_inputs
from tests.conftest import init_params, random_tokens, shift_right


@functools.lru_cache(maxsize=None)
def forward_fn(cfg):
  """A jitted ``(params, batch) -> (encodings, logits)`` with dropout off."""
  model = Seq2Seq(cfg)

  def both(module, batch):
    encoded = module.encode(batch["encoder_input_tokens"], batch.get("encoder_segment_ids"),
                            batch.get("encoder_positions"))
    return encoded, module(**batch)

  return jax.jit(lambda params, batch: model.apply({"params": params}, batch, method=both))


def test_decoder_is_causal(tiny_config):
  rng = np.random.default_rng(0)
  params = init_params(tiny_config)
  targets = random_tokens(rng, tiny_config, (2, 12))
  batch = {"encoder_input_tokens": random_tokens(rng, tiny_config, (2, 9)),
           "decoder_input_tokens": shift_right(targets), "decoder_target_tokens": targets}
  forward = forward_fn(tiny_config)
  _, logits = forward(params, batch)
  t = 5
  changed = batch["decoder_input_tokens"].at[:, t + 1:].set(
      random_tokens(rng, tiny_config, (2, 12 - t - 1)))
  _, logits_changed = forward(params, dict(batch, decoder_input_tokens=changed))
  np.testing.assert_allclose(logits_changed[:, :t + 1], logits[:, :t + 1], atol=1e-5)
  assert not np.allclose(logits_changed[:, t + 1:], logits[:, t + 1:], atol=1e-3)


def test_encoder_padding_changes_nothing(tiny_config):
  """Row 0 is full length, row 1 already padded; then 5 more padding columns are appended."""
  rng = np.random.default_rng(1)
  params = init_params(tiny_config)
  context = random_tokens(rng, tiny_config, (2, 9)).at[1, 6:].set(0)
  targets = random_tokens(rng, tiny_config, (2, 7))
  batch = {"encoder_input_tokens": context, "decoder_input_tokens": shift_right(targets),
           "decoder_target_tokens": targets}
  forward = forward_fn(tiny_config)
  encoded, logits = forward(params, batch)
  padded = dict(batch, encoder_input_tokens=jnp.pad(context, ((0, 0), (0, 5))))
  encoded_padded, logits_padded = forward(params, padded)
  np.testing.assert_allclose(encoded_padded[0, :9], encoded[0], atol=1e-5)
  np.testing.assert_allclose(encoded_padded[1, :6], encoded[1, :6], atol=1e-5)
  np.testing.assert_allclose(logits_padded, logits, atol=1e-5)


def test_packed_row_equals_its_examples_alone(tiny_config):
  """Two examples packed into one row give the logits each gives alone (padded to the row)."""
  rng = np.random.default_rng(2)
  params = init_params(tiny_config)
  enc_lengths, dec_lengths, enc_len, dec_len = (6, 5), (4, 6), 13, 11
  contexts = [random_tokens(rng, tiny_config, (n,)) for n in enc_lengths]
  targets = [random_tokens(rng, tiny_config, (n,)) for n in dec_lengths]

  def pack(pieces, length):
    tokens = jnp.concatenate(pieces)
    segments = jnp.concatenate([jnp.full(len(p), i + 1) for i, p in enumerate(pieces)])
    positions = jnp.concatenate([jnp.arange(len(p)) for p in pieces])
    extra = length - len(tokens)
    return [jnp.pad(a, (0, extra))[None].astype(jnp.int32) for a in (tokens, segments, positions)]

  enc, enc_seg, enc_pos = pack(contexts, enc_len)
  dec_targets, dec_seg, dec_pos = pack(targets, dec_len)
  # SeqIO shifts each packed example separately: every segment starts with token 0.
  dec_inputs = jnp.concatenate([shift_right(t[None]) for t in targets], axis=1)
  dec_inputs = jnp.pad(dec_inputs, ((0, 0), (0, dec_len - dec_inputs.shape[1])))
  packed = {"encoder_input_tokens": enc, "decoder_input_tokens": dec_inputs,
            "decoder_target_tokens": dec_targets, "encoder_segment_ids": enc_seg,
            "decoder_segment_ids": dec_seg, "encoder_positions": enc_pos,
            "decoder_positions": dec_pos}
  packed = {k: jnp.concatenate([v, v]) for k, v in packed.items()}  # Batch 2, like `alone`.
  alone_targets = jnp.stack([jnp.pad(t, (0, dec_len - len(t))) for t in targets])
  alone = {"encoder_input_tokens": jnp.stack([jnp.pad(c, (0, enc_len - len(c)))
                                              for c in contexts]),
           "decoder_input_tokens": shift_right(alone_targets),
           "decoder_target_tokens": alone_targets}
  forward = forward_fn(tiny_config)
  packed_encoded, packed_logits = forward(params, packed)
  alone_encoded, alone_logits = forward(params, alone)
  enc_start, dec_start = 0, 0
  for i, (n_enc, n_dec) in enumerate(zip(enc_lengths, dec_lengths)):
    np.testing.assert_allclose(packed_encoded[0, enc_start:enc_start + n_enc],
                               alone_encoded[i, :n_enc], atol=1e-5)
    np.testing.assert_allclose(packed_logits[0, dec_start:dec_start + n_dec],
                               alone_logits[i, :n_dec], atol=1e-5)
    enc_start, dec_start = enc_start + n_enc, dec_start + n_dec


def test_gradients_are_finite_and_nonzero_for_every_parameter(tiny_config):
  rng = np.random.default_rng(3)
  params = init_params(tiny_config)
  targets = random_tokens(rng, tiny_config, (2, 7)).at[1, 5:].set(0)
  batch = {"encoder_input_tokens": random_tokens(rng, tiny_config, (2, 9)).at[0, 7:].set(0),
           "decoder_input_tokens": shift_right(targets), "decoder_target_tokens": targets}
  model = Seq2Seq(tiny_config)

  def loss(params):
    logits = model.apply({"params": params}, **model_inputs(batch), deterministic=False,
                         rngs={"dropout": jax.random.key(0)})
    total, count = loss_fn(logits, targets)
    return total / count

  grads = jax.jit(jax.grad(loss))(params)
  for path, grad in flax.traverse_util.flatten_dict(grads, sep="/").items():
    assert np.all(np.isfinite(grad)), f"non-finite gradient for {path}"
    assert np.any(grad != 0), f"zero gradient for {path}"


def test_bfloat16_activations_keep_float32_parameters(tiny_config):
  cfg = dataclasses.replace(tiny_config, dtype="bfloat16")
  rng = np.random.default_rng(4)
  params = init_params(tiny_config)
  targets = random_tokens(rng, cfg, (2, 6))
  batch = {"encoder_input_tokens": random_tokens(rng, cfg, (2, 8)),
           "decoder_input_tokens": shift_right(targets), "decoder_target_tokens": targets}
  bf16_params = init_params(cfg)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(bf16_params))
  _, logits16 = forward_fn(cfg)(params, batch)
  _, logits32 = forward_fn(tiny_config)(params, batch)
  assert logits16.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(logits16, np.float32)))
  # bfloat16 keeps ~3 significant digits; the two runs must still agree on the distribution.
  np.testing.assert_allclose(np.asarray(logits16, np.float32), logits32, atol=0.25)


def test_loss_is_token_weighted_cross_entropy():
  logits = jnp.log(jnp.asarray([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
  targets = jnp.asarray([[0, 1, 2]])  # The first target is padding: weight 0 by default.
  total, count = loss_fn(logits, targets)
  assert count == 2
  np.testing.assert_allclose(total, -np.log(0.8) - np.log(1 / 3), rtol=1e-6)
  total, count = loss_fn(logits, targets, weights=jnp.asarray([[1.0, 0.0, 2.0]]))
  np.testing.assert_allclose((total, count), (-np.log(0.5) - 2 * np.log(1 / 3), 3.0), rtol=1e-6)
