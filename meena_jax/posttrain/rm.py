"""Training and evaluating the reward model on ranked comparisons.

InstructGPT: every ranked pair of a prompt's K responses in one batch element, loss ``-mean log
sigmoid(r_better - r_worse)`` (``losses.ranking_loss``); after training the head's bias is
shifted so the rewards of a reference set of responses have mean 0. Held-out pairwise accuracy
is reported next to the "prefer the shorter answer" baseline of the same pairs, the bar a
reward model must clear to show it learned more than length.
"""
import functools

import jax
import numpy as np

from meena_jax.config import ModelConfig
from meena_jax.posttrain import losses, preference_training, reward_model
from meena_jax.posttrain.reward_model import RewardModel


def loss_fn(model: RewardModel, params, batch: dict, key, dropout: bool = True):
  """Ranking loss of one batch of prompts with their ``[B, K, T]`` responses."""
  rewards = reward_model.reward(model, params, batch["encoder_input_tokens"],
                                batch["responses"], deterministic=not dropout, dropout_key=key)
  return losses.ranking_loss(rewards, batch["ranks"], batch["valid"])


@functools.lru_cache(maxsize=8)
def _jitted_reward(model: RewardModel):
  return jax.jit(lambda p, b: reward_model.reward(model, p, b["encoder_input_tokens"],
                                                  b["responses"]))


def score(model: RewardModel, params, data: dict, mesh, batch_size: int) -> np.ndarray:
  """Rewards ``[N, K]`` of every response in ``data`` (dropout off)."""
  fn = _jitted_reward(model)
  return preference_training.batched(lambda b: fn(params, b), data, batch_size, mesh)


def pairwise_accuracy(rewards: np.ndarray, data: dict) -> dict:
  """Share of ranked pairs whose better response scores strictly higher, with the length
  baseline of the same pairs (fewer response tokens wins; ties count as wrong)."""
  ranks, valid = data["ranks"], data["valid"].astype(bool)
  lengths = (data["responses"] > 0).sum(-1)
  pairs = (ranks[:, :, None] < ranks[:, None, :]) & valid[:, :, None] & valid[:, None, :]
  correct = pairs & (rewards[:, :, None] > rewards[:, None, :])
  shorter = pairs & (lengths[:, :, None] < lengths[:, None, :])
  count = max(int(pairs.sum()), 1)
  return {"pairs": int(pairs.sum()), "accuracy": float(correct.sum() / count),
          "shorter_tokens_baseline": float(shorter.sum() / count)}


def train(*, model_config: ModelConfig, train_data: dict, run_dir, mesh, backbone=None,
          reference_data=None, eval_data=None, batch_size: int = 32, epochs: int = 1,
          learning_rate: float = 1e-4, dropout: bool = True, seed: int = 0,
          log_every: int = 10) -> tuple:
  """Trains a reward model from ``backbone`` (``Seq2Seq`` parameters, e.g. an SFT checkpoint;
  None: random) and returns ``(params, records)``. The bias is set so that the rewards of
  ``reference_data``'s responses (default: the training responses) have mean 0. With
  ``eval_data`` the last record holds held-out accuracy and the length baseline."""
  model = RewardModel(model_config)
  params = reward_model.init_params(model, jax.random.key(seed), mesh, backbone)
  reference_data = reference_data if reference_data is not None else train_data

  def finalize(params):
    rewards = score(model, params, reference_data, mesh, batch_size)
    return reward_model.with_mean_zero(params, rewards[reference_data["valid"].astype(bool)])

  def evaluate(params):
    return {f"eval_{k}": v for k, v in pairwise_accuracy(
        score(model, params, eval_data, mesh, batch_size), eval_data).items()}

  return preference_training.fit(
      lambda p, b, k: loss_fn(model, p, b, k, dropout), model, params, train_data,
      run_dir=run_dir, mesh=mesh, batch_size=batch_size, epochs=epochs,
      learning_rate=learning_rate, seed=seed, log_every=log_every, finalize=finalize,
      evaluate=evaluate if eval_data is not None else None)
