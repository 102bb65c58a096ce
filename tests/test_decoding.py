"""Incremental decoding equals the teacher-forced model; sample-and-rank scores are the model's
log-likelihoods; beam search's scores and its greedy special case; settings are validated."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meena_jax import cli, decoding
from meena_jax.model import Seq2Seq, loss_fn
from tests.conftest import TINY, init_params, random_tokens, shift_right

CFG = dataclasses.replace(TINY, dropout_rate=0.0)
MAX_LENGTH = 10


def contexts(seed=0, batch=2):
  """Contexts of 7 tokens, the second padded from token 4 on."""
  return random_tokens(np.random.default_rng(seed), CFG, (batch, 7)).at[1, 4:].set(0)


@functools.lru_cache(maxsize=None)
def teacher_forced_fn(cfg):
  """``(params, contexts [B, s], targets [B*g, L]) -> per-row summed log-likelihood, logits``:
  the full forward pass, each context repeated for its ``g`` rows. Every decoder row counts as
  real (decoding's view); rows after EOS are causal no-ops that the weights leave out."""
  model = Seq2Seq(cfg)

  @jax.jit
  def run(params, context, targets):
    context = jnp.repeat(context, targets.shape[0] // context.shape[0], axis=0)
    logits = model.apply({"params": params}, context, shift_right(targets),
                         decoder_segment_ids=jnp.ones_like(targets))
    nll = jax.vmap(lambda l, t: loss_fn(l[None], t[None])[0])(logits, targets)
    return -nll, logits
  return run


@pytest.mark.parametrize("block_type", ["evolved", "transformer"])
def test_step_by_step_logits_equal_the_full_forward_pass(block_type):
  """Two contexts (one padded), three rows each sharing their context's encoder keys/values."""
  cfg = dataclasses.replace(CFG, block_type=block_type)
  model, params = Seq2Seq(cfg), init_params(cfg)
  context, groups, length = contexts(), 3, 9
  targets = random_tokens(np.random.default_rng(1), cfg, (2 * groups, length))
  inputs = shift_right(targets)

  @jax.jit
  def incremental(params, context, inputs):
    encoded, segments = decoding.encode(model, params, context)
    cache = decoding.init_cache(model, params, encoded, segments, inputs.shape[0], length)
    first, cache = decoding.step_logits(model, params, cache, encoded, segments, inputs[:, 0], 0)

    def one(cache, t):
      logits, cache = decoding.step_logits(model, params, cache, None, segments,
                                           inputs[:, t], t)
      return cache, logits
    _, rest = jax.lax.scan(one, cache, jnp.arange(1, length))
    return jnp.concatenate([first[:, None], jnp.swapaxes(rest, 0, 1)], axis=1)

  _, full = teacher_forced_fn(cfg)(params, context, targets)
  np.testing.assert_allclose(incremental(params, context, inputs), full, atol=1e-5, rtol=1e-5)


@functools.lru_cache(maxsize=None)
def compiled(search, **settings):
  return decoding.compile_search(search, Seq2Seq(CFG), **settings)


SAMPLE = dict(num_samples=6, temperature=0.88, max_length=MAX_LENGTH)


def eos_prone(params):
  """Random weights rarely emit EOS; a final layer-norm bias along EOS's output embedding makes
  candidates of lengths 1 to 10, so stopping at each row's own EOS is exercised."""
  eos = params["embedding"]["embedding"][decoding.EOS_ID]
  norm = dict(params["decoder_norm"], bias=3.0 * eos / jnp.linalg.norm(eos))
  return {**params, "decoder_norm": norm}


def test_sample_scores_are_teacher_forced_log_likelihoods_sorted():
  params = eos_prone(init_params(CFG))
  context = contexts()
  result = jax.device_get(compiled(decoding.sample, **SAMPLE)(params, context,
                                                              jax.random.key(0)))
  tokens, scores, lengths = result.tokens, result.scores, result.lengths
  assert tokens.shape == (2, 6, MAX_LENGTH) and scores.shape == (2, 6)
  assert len(set(lengths.ravel())) > 2, "expected candidates of several lengths"
  for b in range(2):
    for n in range(6):
      row, end = tokens[b, n], lengths[b, n]
      assert np.all(row[:end] > 0) and np.all(row[end:] == 0)  # Nothing after its EOS.
      assert end == MAX_LENGTH or row[end - 1] == decoding.EOS_ID
  loglik, _ = teacher_forced_fn(CFG)(params, context, tokens.reshape(12, MAX_LENGTH))
  np.testing.assert_allclose(scores.ravel(), loglik, rtol=1e-5, atol=1e-4)
  assert np.all(np.diff(scores, axis=1) <= 0)  # Best first.


def test_decoding_compiles_without_ynnpack_on_cpu():
  """The per-step [N, d] matmuls run on XLA's own kernels (the commands' CPU decoding
  options), which the bench measured faster; a jax upgrade that renames the option must not
  silently drop it."""
  if jax.default_backend() != "cpu":
    pytest.skip("a CPU compiler option")
  params, context = init_params(CFG), contexts()
  args = (params, context, jax.random.key(0))
  ours = decoding.compile_search(decoding.sample, Seq2Seq(CFG),
                                compiler_options=cli.decoding_compiler_options(),
                                **SAMPLE).lower(*args).compile().as_text()
  default = jax.jit(functools.partial(decoding.sample, Seq2Seq(CFG), **SAMPLE)).lower(
      *args).compile().as_text()
  assert "ynn_fusion" in default and "ynn_fusion" not in ours


def test_min_length_forbids_early_eos_but_scores_stay_untempered():
  params = eos_prone(init_params(CFG))
  context = contexts()
  result = jax.device_get(compiled(decoding.sample, min_length=MAX_LENGTH, **SAMPLE)(
      params, context, jax.random.key(0)))
  assert np.all(result.lengths == MAX_LENGTH) and not np.any(result.tokens == decoding.EOS_ID)
  loglik, _ = teacher_forced_fn(CFG)(params, context, result.tokens.reshape(12, MAX_LENGTH))
  np.testing.assert_allclose(result.scores.ravel(), loglik, rtol=1e-5, atol=1e-4)


def test_categorical_draws_exactly_what_jax_random_categorical_draws():
  logits = 3.0 * jax.random.normal(jax.random.key(0), (64, 500))
  logits = logits.at[:, :7].set(-jnp.inf).at[:, 100].set(logits[:, 99])  # masked ids, a tie
  for seed in range(5):
    key = jax.random.key(seed)
    np.testing.assert_array_equal(jax.jit(decoding.categorical)(key, logits),
                                  jax.random.categorical(key, logits))


def test_top_k_draws_only_among_the_k_most_likely_tokens():
  params = init_params(CFG)
  context = contexts()
  result = jax.device_get(compiled(decoding.sample, top_k=3, **SAMPLE)(
      params, context, jax.random.key(1)))
  _, logits = teacher_forced_fn(CFG)(params, context, result.tokens.reshape(12, MAX_LENGTH))
  logits = np.asarray(logits).copy()
  logits[..., decoding.PAD_ID] = -np.inf  # Padding is never drawn, so it takes no top-k slot.
  ranks = np.argsort(np.argsort(-logits, axis=-1), axis=-1)
  drawn = np.take_along_axis(ranks, result.tokens.reshape(12, MAX_LENGTH, 1), -1)[..., 0]
  real = result.tokens.reshape(12, MAX_LENGTH) > 0
  assert np.all(drawn[real] < 3)
  assert np.any(drawn[real] > 0)  # It did sample, not only take the argmax.


def test_tiny_top_p_and_top_k_1_are_greedy_and_equal_beam_1():
  params = eos_prone(init_params(CFG))
  context = contexts()
  greedy = jax.device_get(compiled(decoding.beam_search, beam_size=1, max_length=MAX_LENGTH)(
      params, context))
  for truncation in (dict(top_p=1e-6), dict(top_k=1)):
    result = jax.device_get(compiled(decoding.sample, **truncation, **SAMPLE)(
        params, context, jax.random.key(2)))
    for n in range(6):
      np.testing.assert_array_equal(result.tokens[:, n], greedy.tokens[:, 0])


def test_greedy_is_the_argmax_of_the_full_model_at_every_step():
  params = eos_prone(init_params(CFG))
  context = contexts()
  greedy = jax.device_get(compiled(decoding.beam_search, beam_size=1, max_length=MAX_LENGTH)(
      params, context))
  prefix = np.zeros((2, MAX_LENGTH), np.int32)
  for t in range(MAX_LENGTH):  # Causal: the zeros after t change nothing at t.
    _, logits = teacher_forced_fn(CFG)(params, context, jnp.asarray(prefix))
    best = np.argmax(np.where(np.arange(CFG.vocab_size) == 0, -np.inf, logits[:, t]), axis=-1)
    prefix[:, t] = np.where((prefix[:, :t] == decoding.EOS_ID).any(axis=1), 0, best)
  np.testing.assert_array_equal(greedy.tokens[:, 0], prefix)


def test_beam_scores_are_length_penalised_log_likelihoods():
  params = eos_prone(init_params(CFG))
  context = contexts()
  beams = jax.device_get(compiled(decoding.beam_search, beam_size=3, max_length=MAX_LENGTH)(
      params, context))
  greedy = jax.device_get(compiled(decoding.beam_search, beam_size=1, max_length=MAX_LENGTH)(
      params, context))
  loglik, _ = teacher_forced_fn(CFG)(params, context, beams.tokens.reshape(6, MAX_LENGTH))
  penalty = decoding.length_penalty(beams.lengths.ravel().astype(np.float32), 0.6)
  np.testing.assert_allclose(beams.scores.ravel(), loglik / penalty, rtol=1e-5, atol=1e-4)
  assert np.all(np.diff(beams.scores, axis=1) <= 0)
  assert len({tuple(t) for t in beams.tokens[0]}) == 3  # Three different beams.
  assert np.all(beams.scores[:, 0] >= greedy.scores[:, 0] - 1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("temperature", 0.0, "must be > 0"), ("top_p", 1.5, "(0, 1]"), ("num_samples", 0, ">= 1"),
    ("repetition_ngram", -1, ">= 0")])
def test_decoding_config_names_the_bad_setting(field, value, message):
  with pytest.raises(ValueError, match=rf"DecodingConfig\.{field}=.*{message}".replace(
      "(", r"\(").replace("]", r"\]")):
    decoding.DecodingConfig(**{field: value})
