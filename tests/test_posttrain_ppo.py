"""PPO-ptx on a tiny model: reward goes up with beta > 0, per-token KL is log pi - log pi_ref of
the sampled tokens, the value model starts from the reward model, and a crashed run resumes
exactly."""
import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meena_jax import checkpoints, partitioning
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import ppo, reward_model
from tests.conftest import TINY, memory_train_input

# The Transformer block compiles ~2.5x faster than the ET on CPU; the post-training code only
# sees `Seq2Seq`, and the ET is exercised where the reward is read.
CFG = dataclasses.replace(TINY, block_type="transformer", dropout_rate=0.0, num_decoder_layers=1)
CONFIG = ppo.PPOConfig(beta=0.02, ptx_coef=0.5, rollout_batch=32, minibatches=2, epochs=4,
                       max_length=4, policy_learning_rate=3e-3, value_learning_rate=3e-3)


def ptx_input():
  """Pretraining batches of 2 packed rows (a fresh reader, as a restarted process makes)."""
  return memory_train_input(CFG.vocab_size, 2, {"inputs": 8, "targets": 6})


@pytest.fixture(scope="module")
def setup():
  tokens = jnp.ones((1, 4), jnp.int32)
  policy = nn.unbox(jax.jit(Seq2Seq(CFG).init)(jax.random.key(0), tokens, tokens)["params"])
  rm = reward_model.init_params(reward_model.RewardModel(CFG), jax.random.key(1))
  prompts = np.random.default_rng(0).integers(2, CFG.vocab_size, (32, 8)).astype(np.int32)
  return policy, rm, prompts, partitioning.make_mesh()


class Crash(Exception):
  """Raised from the record callback to stop a run as a crash would."""


def crash_at(step):
  def on_record(record):
    if record["step"] == step:
      raise Crash(step)
  return on_record


def test_three_iterations_raise_the_reward_and_a_crashed_run_resumes_exactly(setup, tmp_path):
  policy, rm, prompts, mesh = setup
  kwargs = dict(model_config=CFG, config=CONFIG, policy_params=policy, reference_params=policy,
                value_params=rm, rm_params=rm, prompts=prompts, run_dir=tmp_path, mesh=mesh,
                iterations=3, seed=0, checkpoint_every=2)
  # The run "crashes" after iteration 3 is logged but before it is checkpointed; the restarted
  # run restores iteration 2 and its pretraining input's position, and must redo iteration 3
  # exactly. Both runs have the same settings, so the second compiles nothing new (the
  # persistent cache holds its programs).
  with pytest.raises(Crash):
    ppo.run(on_record=crash_at(3), ptx_input=ptx_input(), **kwargs)
  resumed = ppo.run(ptx_input=ptx_input(), **kwargs)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 3] and resumed == records[3:]
  timings = ("rollout_s", "score_s", "update_s")
  crashed, redone = ({k: v for k, v in r.items() if k not in timings} for r in records[2:])
  assert redone == pytest.approx(crashed, rel=1e-6, abs=1e-7)
  records = records[:3]
  # The RM's reward of the policy's answers to its own rollout prompts, before and after, on
  # the same 4 x 32 sampling keys (one iteration's batch alone is too noisy to compare).
  trainer = ppo.Trainer(CFG, CONFIG, mesh, iterations=1)
  trained = checkpoints.load_params(tmp_path, Seq2Seq(CFG), subtree=ppo.POLICY)
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match="no 'params' at the top level .*holds iteration, policy, value"):
    checkpoints.load_params(tmp_path, Seq2Seq(CFG))  # The subtree is named, never guessed.

  def mean_reward(params):
    rewards = []
    for seed in range(4):
      tokens = trainer.sample(params, prompts, jax.random.key(100 + seed)).tokens[:, 0]
      rewards.append(trainer.score(params, policy, rm, rm, prompts, tokens)["score"])
    return float(jnp.mean(jnp.stack(rewards)))

  before, after = mean_reward(policy), mean_reward(trained)
  assert after > before + 0.3, (before, after)
  assert records[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # The policy starts at the reference.
  assert records[-1]["kl"] > 0
  for key in ("entropy", "value_loss", "clip_fraction", "response_length", "ptx_loss"):
    assert all(np.isfinite(r[key]) for r in records), key
  assert records[0]["ptx_loss"] > 0


def test_per_token_kl_is_the_log_prob_difference_of_the_sampled_tokens(setup):
  policy, rm, prompts, mesh = setup
  trainer = ppo.Trainer(CFG, CONFIG, mesh, iterations=1)
  other = jax.tree_util.tree_map(lambda x: x * 1.05, policy)  # A reference that differs.
  # All 32 prompts: the shapes of the first test, whose compiled sampler and scorer are reused.
  tokens = trainer.sample(other, prompts, jax.random.key(3))
  sampled = tokens.tokens[:, 0]
  rollout = trainer.score(other, policy, rm, rm, prompts, sampled)
  # Independently: teacher-forced log-softmax of both models at the sampled tokens.
  def log_probs(params):
    logits = Seq2Seq(CFG).apply({"params": params}, prompts,
                                reward_model.shift_right(sampled))
    chosen = jnp.take_along_axis(jax.nn.log_softmax(logits), sampled[..., None], -1)[..., 0]
    return chosen * reward_model.response_mask(sampled)
  np.testing.assert_allclose(rollout["kl"], log_probs(other) - log_probs(policy), atol=1e-5)
  # The sampler's own scores (T = 1 log-likelihoods) agree with the teacher-forced ones.
  np.testing.assert_allclose(rollout["log_probs"].sum(-1), tokens.scores[:, 0], atol=1e-4)
  assert float(jnp.abs(rollout["kl"]).sum()) > 0


def test_the_value_model_starts_from_the_reward_model(setup):
  policy, rm, _, mesh = setup
  trainer = ppo.Trainer(CFG, CONFIG, mesh, iterations=1)
  state = trainer.init_state(policy, rm)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(state.value.params),
                               jax.tree_util.tree_leaves(rm)):
    np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))
  assert set(state.value.params) == {"backbone", "head"}
