"""Direct Preference Optimization (Rafailov et al. 2023) on the reward model's comparisons.

The implicit reward of a response is ``beta * (log pi(y|x) - log pi_ref(y|x))`` (summed over
its tokens, EOS included). For K = 2 the DPO loss is ``-log sigmoid`` of the chosen minus the
rejected implicit reward; for K-ranked prompts the same pairwise loss runs over all C(K, 2)
ranked pairs, i.e. ``losses.ranking_loss`` on implicit rewards (``losses.dpo_loss`` is the
K = 2 special case, tested equal). The frozen reference's log-probs are computed once, before
training. Dropout stays off so that policy and reference are compared on the same network.
"""
import functools

import jax
import numpy as np

from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import losses, preference_training, reward_model
from meena_jax.posttrain.rm import pairwise_accuracy


def response_log_probs(model: Seq2Seq, params, batch: dict):
  """Summed log-probs ``[B, K]`` of each prompt's responses."""
  log_probs, _ = reward_model.sequence_log_probs(model, params, batch["encoder_input_tokens"],
                                                 batch["responses"])
  return log_probs.sum(-1)


@functools.lru_cache(maxsize=8)
def _jitted_log_probs(model: Seq2Seq):
  return jax.jit(lambda p, b: response_log_probs(model, p, b))


def implicit_rewards(model: Seq2Seq, params, data: dict, mesh, batch_size: int,
                     beta: float) -> np.ndarray:
  """``beta * (log pi - log pi_ref)`` ``[N, K]`` for every response in ``data`` (which holds
  ``reference_log_probs``)."""
  fn = _jitted_log_probs(model)
  log_probs = preference_training.batched(lambda b: fn(params, b), data, batch_size, mesh)
  return beta * (log_probs - data["reference_log_probs"])


def with_reference(model: Seq2Seq, reference_params, data: dict, mesh,
                   batch_size: int) -> dict:
  """``data`` plus ``reference_log_probs`` ``[N, K]`` under the frozen reference."""
  fn = _jitted_log_probs(model)
  ref = preference_training.batched(lambda b: fn(reference_params, b), data, batch_size, mesh)
  return {**data, "reference_log_probs": ref.astype(np.float32)}


def loss_fn(model: Seq2Seq, params, batch: dict, beta: float):
  """DPO over every ranked pair of each prompt (mean over a prompt's pairs, then prompts)."""
  implicit = beta * (response_log_probs(model, params, batch) - batch["reference_log_probs"])
  return losses.ranking_loss(implicit, batch["ranks"], batch["valid"])


def train(*, model_config: ModelConfig, policy_params, train_data: dict, run_dir, mesh,
          eval_data=None, beta: float = 0.1, batch_size: int = 32, epochs: int = 1,
          learning_rate: float = 1e-5, seed: int = 0, log_every: int = 10) -> tuple:
  """DPO from ``policy_params`` (also the frozen reference); returns ``(params, records)``.
  With ``eval_data`` the last record holds the held-out preference accuracy of the implicit
  reward and the length baseline of the same pairs."""
  model = Seq2Seq(model_config)
  train_data = with_reference(model, policy_params, train_data, mesh, batch_size)
  if eval_data is not None:
    eval_data = with_reference(model, policy_params, eval_data, mesh, batch_size)

  def evaluate(params):
    rewards = implicit_rewards(model, params, eval_data, mesh, batch_size, beta)
    return {f"eval_{k}": v for k, v in pairwise_accuracy(rewards, eval_data).items()}

  return preference_training.fit(
      lambda p, b, k: loss_fn(model, p, b, beta), model, policy_params, train_data,
      run_dir=run_dir, mesh=mesh, batch_size=batch_size, epochs=epochs,
      learning_rate=learning_rate, seed=seed, log_every=log_every,
      evaluate=evaluate if eval_data is not None else None)
