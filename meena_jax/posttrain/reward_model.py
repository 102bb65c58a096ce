"""The reward (and PPO value) model: Meena's seq2seq with a scalar head on the decoder's final
state, and the sequence-level quantities post-training reads off both models.

``RewardModel.__call__(encoder_input_tokens, decoder_input_tokens)`` returns one scalar per
decoder position: the head applied to the final (layer-normed) decoder state there. Its call
signature is ``Seq2Seq``'s, so ``checkpoints.load_params`` and ``partitioning`` treat it like any
model. Two readings of it:
  - reward: decoder inputs ``[0, r_1, ..., r_n = EOS]``; the score at the EOS input, i.e. once
    the whole response, EOS included, has been read (``reward``);
  - value (PPO): decoder inputs ``[0, a_1, ..., a_{T-1}]``; position t is V of the state before
    token t is drawn (``values``).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from meena_jax import layers
from meena_jax import state as state_lib
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import losses


def shift_right(tokens):
  """Decoder inputs from targets (start token 0), as SeqIO's feature converter makes them."""
  return jnp.pad(tokens[..., :-1], [(0, 0)] * (tokens.ndim - 1) + [(1, 0)])


def response_lengths(tokens):
  """Tokens up to and including the first EOS (all of them when there is none)."""
  is_eos = tokens == 1
  first = jnp.argmax(is_eos, axis=-1)
  return jnp.where(jnp.any(is_eos, axis=-1), first + 1, tokens.shape[-1]).astype(jnp.int32)


def response_mask(tokens):
  """1 on response tokens up to and including EOS, 0 after."""
  return (jnp.arange(tokens.shape[-1]) < response_lengths(tokens)[..., None]).astype(jnp.float32)


class RewardModel(nn.Module):
  """``Seq2Seq`` (as ``backbone``, parameters laid out as in a training checkpoint) plus a
  ``[d_model, 1]`` head whose kernel carries the logical names ``("embed", None)``."""
  cfg: ModelConfig

  def setup(self):
    self.backbone = Seq2Seq(self.cfg)
    self.head = layers.dense(self.cfg, 1, ("embed", None), "head")

  def __call__(self, encoder_input_tokens, decoder_input_tokens, deterministic: bool = True):
    """``[b, s]`` contexts and ``[b, t]`` decoder inputs -> ``[b, t]`` float32 scores."""
    captured = {}

    def keep_final_state(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if (context.method_name == "__call__" and context.module.name == "decoder_norm"
          and context.module.parent is self.backbone):
        captured["states"] = out
      return out

    # Seq2Seq computes logits from the normed state; the tied projection is dead code here and
    # XLA drops it.
    with nn.intercept_methods(keep_final_state):
      self.backbone(encoder_input_tokens, decoder_input_tokens,
                    decoder_segment_ids=jnp.ones_like(decoder_input_tokens),
                    deterministic=deterministic)
    return self.head(captured["states"])[..., 0].astype(jnp.float32)


def _flatten_responses(encoder_input_tokens, responses):
  """``[B, s]`` and ``[B, K, T]`` -> ``[B*K, s]`` (each context repeated K times), ``[B*K, T]``."""
  k = responses.shape[1]
  return (jnp.repeat(encoder_input_tokens, k, axis=0),
          responses.reshape((-1, responses.shape[-1])))


def reward(model: RewardModel, params, encoder_input_tokens, responses,
           deterministic: bool = True, dropout_key=None):
  """The score of each response at its EOS: ``[B]`` for ``[B, T]`` responses, ``[B, K]`` for
  ``[B, K, T]`` (each context read once per response)."""
  shape = responses.shape[:-1]
  if responses.ndim == 3:
    encoder_input_tokens, responses = _flatten_responses(encoder_input_tokens, responses)
  inputs = jnp.pad(responses, ((0, 0), (1, 0)))  # [0, r_1, ..., EOS]: T + 1 positions.
  rngs = None if deterministic else {"dropout": dropout_key}
  scores = model.apply({"params": params}, encoder_input_tokens, inputs,
                       deterministic=deterministic, rngs=rngs)
  at_eos = jnp.take_along_axis(scores, response_lengths(responses)[:, None], axis=1)[:, 0]
  return at_eos.reshape(shape)


def values(model: RewardModel, params, encoder_input_tokens, tokens):
  """PPO values ``[B, T]``: V of the state before each of the ``[B, T]`` sampled tokens."""
  return model.apply({"params": params}, encoder_input_tokens, shift_right(tokens))


def sequence_log_probs(model: Seq2Seq, params, encoder_input_tokens, responses,
                       deterministic: bool = True, dropout_key=None):
  """``(per-token log-probs, entropies)`` of ``[B, T]`` (or ``[B, K, T]``) responses under the
  policy ``model``, teacher-forced; positions after EOS are 0."""
  shape = responses.shape
  if responses.ndim == 3:
    encoder_input_tokens, responses = _flatten_responses(encoder_input_tokens, responses)
  rngs = None if deterministic else {"dropout": dropout_key}
  logits = model.apply({"params": params}, encoder_input_tokens, shift_right(responses),
                       decoder_target_tokens=responses, deterministic=deterministic, rngs=rngs)
  log_probs, entropy = losses.token_log_probs(logits, responses)
  mask = response_mask(responses)
  return (log_probs * mask).reshape(shape), (entropy * mask).reshape(shape)


def init_params(model: RewardModel, key, mesh=None, backbone=None):
  """Fresh reward-model parameters (sharded on ``mesh`` when given), with ``backbone``
  (parameters of a ``Seq2Seq``, e.g. ``checkpoints.load_params`` of an SFT run) in place of the
  random backbone."""
  init = lambda k: nn.unbox(state_lib.init_params(model, k))
  if mesh is not None:
    init = jax.jit(init, out_shardings=state_lib.param_shardings(model, mesh))
  params = init(key)
  if backbone is not None:
    params = {**params, "backbone": backbone}
  return params


def with_mean_zero(params, reference_rewards):
  """The head's bias shifted so that ``reference_rewards`` (scores under ``params``) have
  mean 0: InstructGPT's normalisation after reward-model training."""
  head = dict(params["head"])
  head["bias"] = head["bias"] - jnp.mean(reference_rewards).astype(head["bias"].dtype)
  return {**params, "head": head}
