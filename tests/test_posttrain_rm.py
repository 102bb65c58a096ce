"""Reward model and DPO on a tiny model and synthetic preferences whose rule is learnable (the
better response starts with a token that encodes its rank)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meena_jax import checkpoints, partitioning
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import dpo, losses, reward_model, rm
from tests.conftest import TINY, init_params

# The Transformer block compiles ~2.5x faster than the ET on CPU; the post-training code only
# sees `Seq2Seq`, and the ET is exercised where the reward is read.
CFG = dataclasses.replace(TINY, block_type="transformer", dropout_rate=0.0, num_decoder_layers=1)


def synthetic(prompts: int, seed: int, k: int = 4) -> dict:
  """``prompts`` prompts with ``k`` ranked responses of 6 tokens (EOS last); response i starts
  with token 10 + its rank, so the ranking is learnable from the first token."""
  rng = np.random.default_rng(seed)
  ranks = np.stack([rng.permutation(k) for _ in range(prompts)]).astype(np.int32)
  responses = rng.integers(20, CFG.vocab_size, (prompts, k, 6)).astype(np.int32)
  responses[:, :, 0], responses[:, :, -1] = 10 + ranks, 1
  return {"encoder_input_tokens": rng.integers(2, CFG.vocab_size, (prompts, 8)).astype(np.int32),
          "responses": responses, "ranks": ranks, "valid": np.ones((prompts, k), np.int32)}


def test_the_reward_is_read_at_eos_whatever_follows_it():
  model = reward_model.RewardModel(dataclasses.replace(CFG, block_type="evolved"))
  params = reward_model.init_params(model, jax.random.key(0))
  context = jnp.array([[5, 6, 7, 0]])
  short = jnp.array([[9, 8, 1, 0]])
  longer = jnp.array([[9, 8, 1, 0, 0, 0, 0]])
  junk_after_eos = jnp.array([[9, 8, 1, 33, 44, 0, 0]])
  reward = jax.jit(lambda p, c, r: reward_model.reward(model, p, c, r))
  rewards = [float(reward(params, context, r)[0]) for r in (short, longer, junk_after_eos)]
  assert rewards[1] == pytest.approx(rewards[0], abs=1e-5)
  assert rewards[2] == pytest.approx(rewards[0], abs=1e-5)
  other = float(reward(params, context, jnp.array([[9, 1, 0, 0]]))[0])
  assert other != pytest.approx(rewards[0], abs=1e-4)


def test_reward_model_learns_the_ranking_and_its_rewards_are_centred(tmp_path):
  mesh = partitioning.make_mesh()
  train, held_out = synthetic(48, 0), synthetic(24, 1)
  backbone = init_params(CFG)
  params, records = rm.train(model_config=CFG, train_data=train, eval_data=held_out,
                             run_dir=tmp_path, mesh=mesh, backbone=backbone, batch_size=8,
                             epochs=3, learning_rate=3e-3, log_every=6)
  assert records[-1]["eval_pairs"] == 24 * 6
  assert records[-1]["eval_accuracy"] >= 0.9, records
  assert records[-1]["eval_shorter_tokens_baseline"] == 0.0  # All responses are 6 tokens.
  model = reward_model.RewardModel(CFG)
  rewards = rm.score(model, params, train, mesh, 8)
  assert abs(float(rewards.mean())) < 1e-4  # The bias centres the reference (training) set.
  loaded = checkpoints.load_params(tmp_path, model)  # The checkpoint holds the centred model.
  np.testing.assert_allclose(loaded["head"]["bias"], params["head"]["bias"], atol=1e-6)


def test_the_reward_model_starts_from_the_given_backbone():
  model = reward_model.RewardModel(CFG)
  backbone = init_params(CFG, seed=3)
  params = reward_model.init_params(model, jax.random.key(0), backbone=backbone)
  for got, want in zip(jax.tree_util.tree_leaves(params["backbone"]),
                       jax.tree_util.tree_leaves(backbone)):
    np.testing.assert_array_equal(got, want)


def test_dpo_on_pairs_is_the_ranking_loss_of_implicit_rewards():
  policy = jnp.array([[-10.0, -12.0], [-5.0, -6.0]])
  reference = jnp.array([[-11.0, -11.0], [-4.0, -8.0]])
  expected, _ = losses.dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1],
                                beta=0.1)
  got, _ = losses.ranking_loss(0.1 * (policy - reference), jnp.array([[0, 1], [0, 1]]),
                               jnp.ones((2, 2)))
  assert float(got) == pytest.approx(float(expected), abs=1e-6)


def test_dpo_raises_the_preference_accuracy_of_its_implicit_reward(tmp_path):
  mesh = partitioning.make_mesh()
  train, held_out = synthetic(48, 0, k=2), synthetic(24, 1, k=2)
  policy = init_params(CFG)
  model = Seq2Seq(CFG)
  before = rm.pairwise_accuracy(
      dpo.implicit_rewards(model, policy, dpo.with_reference(model, policy, held_out, mesh, 8),
                           mesh, 8, beta=0.1), held_out)
  assert before["accuracy"] == 0.0  # pi = pi_ref: every implicit reward is 0, a tie.
  _, records = dpo.train(model_config=CFG, policy_params=policy, train_data=train,
                         eval_data=held_out, run_dir=tmp_path, mesh=mesh, beta=0.1,
                         batch_size=8, epochs=3, learning_rate=3e-3, log_every=6)
  assert records[-1]["eval_accuracy"] >= 0.9, records
