"""Decoding: Meena's sample-and-rank, and beam search (greedy is beam 1) as the baseline.

Input: contexts as encoder tokens ``[B, s]`` (0-padded; ``chat.py`` tokenizes them). Output:
``Candidates`` per context, best first, with their scores; ``repetition.py`` filters them and
``chat.py`` turns the winner into text. Both searches encode each context once, then call
``Seq2Seq.decode_step`` once per token inside one ``lax.while_loop``, the per-layer state living
in the model's ``cache`` collection; the ``N`` (or ``K``) rows of a context are contiguous and
share its encoder keys/values.

A worked sample-and-rank example (N = 2, EOS = 1, pad 0; ``lp`` = log-softmax of the raw
logits, i.e. at T = 1, while the tokens are drawn from ``logits / T``):

  step  inputs  drawn   tokens         done   scores
  0     0 0     5 7     5 . . / 7 . .  F F    lp(5)          / lp(7)
  1     5 7     1 9     5 1 . / 7 9 .  T F    + lp(1|5)      / + lp(9|7)
  2     1 9     - 1     5 1 0 / 7 9 1  T T    (finished)     / + lp(1|7 9)

Row 0 stopped at its own EOS: from then on it writes padding and its score stays fixed. The loop
ends when every row is done or ``max_length`` tokens are drawn. Scores are summed log-likelihoods
up to and including EOS, with no length normalisation, accumulated while decoding (no second
forward pass), and the candidates come back sorted by them.
"""
import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from meena_jax import partitioning
from meena_jax import state as state_lib
from meena_jax.model import Seq2Seq

PAD_ID, EOS_ID = 0, 1

@dataclasses.dataclass(frozen=True)
class DecodingConfig:
  """Decoding settings (gin binds them in ``gin/decoding/*.gin``).

  Attributes:
    num_samples: sample-and-rank candidates per context (Meena: 20).
    temperature: sampling temperature; scores are always taken at T = 1.
    top_k / top_p: optional truncation of the sampling distribution (None: plain sampling).
    max_length: response tokens, EOS included.
    repetition_ngram: a candidate sharing an n-gram of this many tokens with an earlier turn,
      or containing one twice, is dropped before ranking (0 switches the filter off).
    beam_size / length_penalty: the beam baseline; scores are ``log p / ((5 + len) / 6) **
      length_penalty`` (GNMT).
  """
  num_samples: int = 20
  temperature: float = 0.88
  top_k: Optional[int] = None
  top_p: Optional[float] = None
  max_length: int = 128
  repetition_ngram: int = 4
  beam_size: int = 4
  length_penalty: float = 0.6

  def __post_init__(self):
    def bad(field, why):
      raise ValueError(f"DecodingConfig.{field}={getattr(self, field)!r}: {why}")
    for field in ("num_samples", "max_length", "beam_size"):
      if getattr(self, field) < 1:
        bad(field, "must be >= 1")
    if self.temperature <= 0:
      bad("temperature", "must be > 0")
    if self.top_k is not None and self.top_k < 1:
      bad("top_k", "must be >= 1 or None")
    if self.top_p is not None and not 0 < self.top_p <= 1:
      bad("top_p", "must be in (0, 1] or None")
    if self.repetition_ngram < 0:
      bad("repetition_ngram", "must be >= 0")


@flax.struct.dataclass
class Candidates:
  """Decoded responses, best first within each context."""
  tokens: jax.Array   # [B, n, max_length] int32: the response, EOS included, 0 after it.
  scores: jax.Array   # [B, n] float32: sum of T = 1 log-probs (beam: length-penalised).
  lengths: jax.Array  # [B, n] int32: tokens up to and including EOS (max_length if none).


@flax.struct.dataclass
class SamplingState:
  """What the sampling loop carries; ``rows`` = B * N candidates, context-major."""
  step: jax.Array    # [] int32: tokens drawn so far, and the next token's position.
  inputs: jax.Array  # [rows] int32: the previous token (0, the start token, at step 0).
  tokens: jax.Array  # [rows, max_length] int32: drawn tokens, 0 after a row's EOS.
  scores: jax.Array  # [rows] float32: summed T = 1 log-probs of the drawn tokens.
  done: jax.Array    # [rows] bool: the row has drawn EOS.
  cache: Any         # The model's ``cache`` collection for the rows.
  encoder_segment_ids: jax.Array  # [B, s] int32: the contexts' padding mask (0 = padding).
  key: jax.Array     # [] PRNG key of the call; step t draws with ``fold_in(key, t)``.


@flax.struct.dataclass
class BeamState:
  """What the beam loop carries; scores of empty slots are -inf."""
  step: jax.Array             # [] int32: tokens decoded so far.
  alive_tokens: jax.Array     # [B, K, max_length] int32: beams without EOS yet.
  alive_scores: jax.Array     # [B, K] float32: their summed log-probs.
  finished_tokens: jax.Array  # [B, K, max_length] int32: the best beams ended by EOS.
  finished_scores: jax.Array  # [B, K] float32: their length-penalised scores.
  cache: Any                  # The model's ``cache`` collection for the B * K alive beams.


# ----------------------------------------------------------------------------------------------
# The model, one step at a time.


def encode(model: Seq2Seq, params, encoder_input_tokens):
  """(encodings ``[B, s, d]``, segment ids ``[B, s]``) of 0-padded contexts."""
  segment_ids = (encoder_input_tokens > 0).astype(jnp.int32)
  encoded = model.apply({"params": params}, encoder_input_tokens, segment_ids,
                        method=Seq2Seq.encode)
  return encoded, segment_ids


def init_cache(model: Seq2Seq, params, encoded, encoder_segment_ids, rows: int,
               max_length: int):
  """A zero cache for ``rows`` decoder rows of up to ``max_length`` tokens: the shapes come
  from evaluating (not running) one call over ``max_length`` tokens; zeros are the right start
  for every entry (empty key/value slots, causal zero padding of the conv rows)."""
  def sized_by_one_call():
    tokens = jnp.zeros((rows, max_length), jnp.int32)
    _, variables = model.apply({"params": params}, encoded, encoder_segment_ids, tokens, tokens,
                               method=Seq2Seq.decode_step, mutable=["cache"])
    return variables["cache"]
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                jax.eval_shape(sized_by_one_call))


def step_logits(model: Seq2Seq, params, cache, encoded, encoder_segment_ids, inputs, step):
  """``[rows]`` previous tokens at position ``step`` -> (float32 ``[rows, vocab]`` logits, new
  cache). ``encoded`` is given on the first step only (it fills the encoder keys/values)."""
  positions = jnp.full((inputs.shape[0], 1), step, jnp.int32)
  logits, variables = model.apply({"params": params, "cache": cache}, encoded,
                                  encoder_segment_ids, inputs[:, None], positions,
                                  method=Seq2Seq.decode_step, mutable=["cache"])
  return logits[:, 0].astype(jnp.float32), variables["cache"]


# ----------------------------------------------------------------------------------------------
# Sample-and-rank.


def _never_padding(logits):
  """Id 0 is padding (and the start token), never a response token: it gets -inf. Scores
  still use the unmasked distribution, the one training and perplexity measure."""
  return logits.at[:, PAD_ID].set(-jnp.inf)


def truncate_logits(logits, top_k: Optional[int] = None, top_p: Optional[float] = None):
  """Sets logits outside the top ``k`` tokens, or outside the smallest set whose probability
  reaches ``top_p`` (nucleus), to -inf; None leaves the distribution whole."""
  if top_k is not None and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p is not None and top_p < 1.0:
    descending = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(descending, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    kept = jnp.where(mass_before < top_p, descending, jnp.inf)
    logits = jnp.where(logits < jnp.min(kept, axis=-1, keepdims=True), -jnp.inf, logits)
  return logits


def categorical(key, logits):
  """``jax.random.categorical`` (the same Gumbel-max draw, bit for bit) with its argmax taken
  as the first index of the row maximum: XLA:CPU runs argmax's two-output reduction serially,
  2.7 ms of a 25 ms step for 20 x 8000 logits, while these two plain reductions vectorise."""
  perturbed = jax.random.gumbel(key, logits.shape, logits.dtype) + logits
  best = jnp.max(perturbed, axis=-1, keepdims=True)
  vocab = jnp.arange(logits.shape[-1], dtype=jnp.int32)
  return jnp.min(jnp.where(perturbed == best, vocab, logits.shape[-1]), axis=-1)


def sample(model: Seq2Seq, params, encoder_input_tokens, key, *, num_samples: int = 20,
           temperature: float = 0.88, top_k: Optional[int] = None,
           top_p: Optional[float] = None, max_length: int = 128,
           min_length: int = 0) -> Candidates:
  """Meena's sample-and-rank: ``num_samples`` candidates per context, ranked by their T = 1
  log-likelihood. ``min_length`` forbids EOS before that many tokens (benchmarks force full
  length this way); it changes the sampling only, never the scores."""
  draw = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_length=min_length)
  state = sample_first_step(model, params, encoder_input_tokens, key, num_samples=num_samples,
                            max_length=max_length, **draw)
  state = jax.lax.while_loop(lambda s: (s.step < max_length) & ~jnp.all(s.done),
                             functools.partial(sample_next_step, model, params, **draw), state)
  batch = encoder_input_tokens.shape[0]
  return _ranked(state.tokens.reshape(batch, num_samples, max_length),
                 state.scores.reshape(batch, num_samples))


def sample_first_step(model: Seq2Seq, params, encoder_input_tokens, key, *, num_samples: int,
                      max_length: int, **draw) -> SamplingState:
  """Encodes the contexts, sizes the cache for their ``B * num_samples`` rows and draws the
  first token (which also caches the encoder keys/values). ``draw``: ``sample_next_step``'s."""
  rows = encoder_input_tokens.shape[0] * num_samples
  encoded, segment_ids = encode(model, params, encoder_input_tokens)
  state = SamplingState(
      step=jnp.zeros((), jnp.int32), inputs=jnp.zeros((rows,), jnp.int32),
      tokens=jnp.zeros((rows, max_length), jnp.int32), scores=jnp.zeros((rows,), jnp.float32),
      done=jnp.zeros((rows,), bool),
      cache=init_cache(model, params, encoded, segment_ids, rows, max_length),
      encoder_segment_ids=segment_ids, key=key)
  return _sampling_step(model, params, state, encoded, **draw)


def sample_next_step(model: Seq2Seq, params, state: SamplingState, *, temperature: float,
                     top_k: Optional[int], top_p: Optional[float],
                     min_length: int = 0) -> SamplingState:
  """One more token for every row (the body of ``sample``'s loop)."""
  return _sampling_step(model, params, state, None, temperature=temperature, top_k=top_k,
                        top_p=top_p, min_length=min_length)


def _sampling_step(model, params, state: SamplingState, encoded, *, temperature, top_k, top_p,
                   min_length) -> SamplingState:
  logits, cache = step_logits(model, params, state.cache, encoded, state.encoder_segment_ids,
                              state.inputs, state.step)
  log_probs = jax.nn.log_softmax(logits)
  drawn_from = _never_padding(logits / temperature)
  if min_length:
    eos = jnp.where(state.step < min_length, -jnp.inf, drawn_from[:, EOS_ID])
    drawn_from = drawn_from.at[:, EOS_ID].set(eos)
  drawn_from = truncate_logits(drawn_from, top_k, top_p)
  token = categorical(jax.random.fold_in(state.key, state.step), drawn_from)
  token = jnp.where(state.done, PAD_ID, token).astype(jnp.int32)
  gained = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
  return state.replace(
      step=state.step + 1, inputs=token,
      tokens=jax.lax.dynamic_update_slice(state.tokens, token[:, None], (0, state.step)),
      scores=state.scores + jnp.where(state.done, 0.0, gained),
      done=state.done | (token == EOS_ID), cache=cache)


def _lengths(tokens):
  """Tokens up to and including the first EOS (all of them when there is none)."""
  is_eos = tokens == EOS_ID
  first = jnp.argmax(is_eos, axis=-1)
  return jnp.where(jnp.any(is_eos, axis=-1), first + 1, tokens.shape[-1]).astype(jnp.int32)


def _ranked(tokens, scores) -> Candidates:
  order = jnp.argsort(-scores, axis=-1)
  tokens = jnp.take_along_axis(tokens, order[..., None], axis=1)
  return Candidates(tokens=tokens, scores=jnp.take_along_axis(scores, order, axis=1),
                    lengths=_lengths(tokens))


# ----------------------------------------------------------------------------------------------
# Beam search.


def length_penalty(length, alpha: float):
  """GNMT's ``((5 + length) / 6) ** alpha``; a beam's score is its log-prob divided by it."""
  return ((5.0 + length) / 6.0) ** alpha


def beam_search(model: Seq2Seq, params, encoder_input_tokens, *, beam_size: int = 4,
                max_length: int = 128, alpha: float = 0.6) -> Candidates:
  """The ``beam_size`` best responses per context by length-penalised log-likelihood.

  Each step extends every alive beam by every token and keeps the best ``2K`` extensions. As in
  fairseq, an extension ending in EOS joins the finished set (scored ``log p /
  length_penalty``) only when it ranks among the top ``K``; the best ``K`` others stay alive,
  and the cache is reordered to follow them. A context is decided once it has ``K`` finished
  beams (it is then frozen, so a context's result never depends on the others in the batch);
  at ``max_length`` its alive beams compete with the finished ones. ``beam_size=1`` is exactly
  greedy decoding: the argmax each step, stopping at EOS.
  """
  batch, k = encoder_input_tokens.shape[0], beam_size
  encoded, segment_ids = encode(model, params, encoder_input_tokens)
  neg_inf = jnp.array(-jnp.inf, jnp.float32)

  def decided(state: BeamState):
    return jnp.sum(jnp.isfinite(state.finished_scores), axis=1) >= k

  def step(state: BeamState, encoded) -> BeamState:
    previous = jax.lax.dynamic_index_in_dim(state.alive_tokens, jnp.maximum(state.step - 1, 0),
                                            axis=2, keepdims=False)
    inputs = jnp.where(state.step == 0, PAD_ID, previous).reshape(batch * k)
    logits, cache = step_logits(model, params, state.cache, encoded, segment_ids, inputs,
                                state.step)
    log_probs = _never_padding(jax.nn.log_softmax(logits)).reshape(batch, k, -1)
    vocab = log_probs.shape[-1]
    extended = (state.alive_scores[:, :, None] + log_probs).reshape(batch, k * vocab)
    top_scores, top_index = jax.lax.top_k(extended, 2 * k)
    parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    sequences = jnp.take_along_axis(state.alive_tokens, parent[..., None], axis=1)
    sequences = jax.lax.dynamic_update_slice(
        sequences, token[..., None], (0, 0, state.step))  # [B, 2K, L]
    ended = token == EOS_ID

    alive_scores, pick = jax.lax.top_k(jnp.where(ended, neg_inf, top_scores), k)
    alive_tokens = jnp.take_along_axis(sequences, pick[..., None], axis=1)
    rows = (jnp.arange(batch)[:, None] * k + jnp.take_along_axis(parent, pick, 1)).reshape(-1)
    cache = jax.tree_util.tree_map(
        lambda x: x[rows] if x.ndim and x.shape[0] == batch * k else x, cache)

    finishing = ended & (jnp.arange(2 * k) < k) & ~decided(state)[:, None]
    new_finished = jnp.where(finishing, top_scores / length_penalty(state.step + 1.0, alpha),
                             neg_inf)
    finished_scores, pick = jax.lax.top_k(
        jnp.concatenate([state.finished_scores, new_finished], axis=1), k)
    finished_tokens = jnp.take_along_axis(
        jnp.concatenate([state.finished_tokens, sequences], axis=1), pick[..., None], axis=1)
    return BeamState(step=state.step + 1, alive_tokens=alive_tokens, alive_scores=alive_scores,
                     finished_tokens=finished_tokens, finished_scores=finished_scores,
                     cache=cache)

  empty = jnp.zeros((batch, k, max_length), jnp.int32)
  state = BeamState(
      step=jnp.zeros((), jnp.int32), alive_tokens=empty,
      # Only the first of the K identical start beams may expand.
      alive_scores=jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, neg_inf), (batch, 1)),
      finished_tokens=empty, finished_scores=jnp.full((batch, k), neg_inf),
      cache=init_cache(model, params, encoded, segment_ids, batch * k, max_length))
  state = step(state, encoded)  # The first step also caches the encoder keys/values.
  state = jax.lax.while_loop(lambda s: (s.step < max_length) & ~jnp.all(decided(s)),
                             lambda s: step(s, None), state)

  # Undecided contexts at max_length: their alive beams compete with the finished ones.
  alive = state.alive_scores / length_penalty(float(max_length), alpha)
  alive = jnp.where(decided(state)[:, None], neg_inf, alive)
  scores, pick = jax.lax.top_k(jnp.concatenate([state.finished_scores, alive], axis=1), k)
  tokens = jnp.take_along_axis(
      jnp.concatenate([state.finished_tokens, state.alive_tokens], axis=1), pick[..., None],
      axis=1)
  return _ranked(tokens, scores)


# ----------------------------------------------------------------------------------------------
# Compiled entry points.


def jit_on_mesh(fn: Callable, mesh=None, in_shardings=None, out_shardings=None,
                compiler_options: Optional[dict] = None):
  """``fn`` jitted; with a ``mesh``, placed by the given shardings (arguments not covered keep
  their own). Call the result inside ``partitioning.activate(mesh)``, as the trainer does, so
  the activation constraints apply (``Responder`` does). ``compiler_options`` are XLA's,
  chosen by the caller for its platform (the commands' CPU options:
  ``cli.decoding_compiler_options``)."""
  if mesh is None:
    return jax.jit(fn, compiler_options=compiler_options)
  return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                 compiler_options=compiler_options)


def compile_search(search: Callable, model: Seq2Seq, mesh=None,
                   compiler_options: Optional[dict] = None, **settings) -> Callable:
  """``search`` (``sample`` or ``beam_search``) with ``settings`` bound, jitted once.

  Returns ``fn(params, encoder_input_tokens[, key]) -> Candidates`` (a key when ``search``
  takes one). With a ``mesh`` the parameters follow the training axis rules, contexts and
  their candidates are split over ``data``, and the result is the same as on one device
  (sampling keys do not depend on the layout: jax's threefry is partitionable). jax accepts
  ``compiler_options`` only on a top-level jit: call the result directly, not inside another.
  """
  bound = functools.partial(search, model, **settings)
  if mesh is None:
    return jit_on_mesh(bound, compiler_options=compiler_options)
  with_key = "key" in inspect.signature(search).parameters
  return jit_on_mesh(bound, mesh, search_shardings(model, mesh, with_key),
                     partitioning.batch_sharding(mesh), compiler_options)


def search_shardings(model: Seq2Seq, mesh, with_key: bool = True) -> tuple:
  """In-shardings of ``(params, encoder_input_tokens[, key])``: parameters by the rules,
  contexts split over ``data``, the key replicated."""
  return ((state_lib.param_shardings(model, mesh), partitioning.batch_sharding(mesh))
          + ((partitioning.replicated(mesh),) if with_key else ()))


def sampling_settings(config: DecodingConfig, min_length: int = 0) -> dict:
  """``sample``'s keyword arguments from a ``DecodingConfig``."""
  return dict(num_samples=config.num_samples, temperature=config.temperature,
              top_k=config.top_k, top_p=config.top_p, max_length=config.max_length,
              min_length=min_length)


def sampler(model: Seq2Seq, config: DecodingConfig, mesh=None, min_length: int = 0,
            compiler_options: Optional[dict] = None):
  """The jitted sample-and-rank of ``config``: ``fn(params, tokens, key) -> Candidates``."""
  return compile_search(sample, model, mesh, compiler_options,
                        **sampling_settings(config, min_length))


def sampler_steps(model: Seq2Seq, config: DecodingConfig, mesh=None):
  """``sample``'s two parts jitted alone, to cost a call without running its loop:
  ``first(params, tokens, key)`` encodes and draws token 1 (``SamplingState`` out);
  ``next(params, state)`` draws one more. A full-length call is one ``first`` and
  ``max_length - 1`` ``next``s."""
  settings = sampling_settings(config)
  draw = {k: settings[k] for k in ("temperature", "top_k", "top_p", "min_length")}
  first = functools.partial(sample_first_step, model, num_samples=config.num_samples,
                            max_length=config.max_length, **draw)
  following = functools.partial(sample_next_step, model, **draw)
  in_shardings = search_shardings(model, mesh) if mesh is not None else None
  return jit_on_mesh(first, mesh, in_shardings), jit_on_mesh(following, mesh)


def beam(model: Seq2Seq, config: DecodingConfig, mesh=None, beam_size: Optional[int] = None,
         compiler_options: Optional[dict] = None):
  """The jitted beam search of ``config``: ``fn(params, tokens) -> Candidates``."""
  return compile_search(beam_search, model, mesh, compiler_options,
                        beam_size=beam_size or config.beam_size, max_length=config.max_length,
                        alpha=config.length_penalty)
