"""Held-out policy evaluation: the sampled answers, their RM scores and KL are what the library's
own pieces give for the same tokens; every policy gets the same sampling keys; policies load from
PPO runs and from training checkpoints."""
import dataclasses

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from meena_jax import checkpoints, partitioning
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import evaluate, reward_model
from meena_jax.posttrain.reward_model import RewardModel
from tests.conftest import TINY, init_params

CFG = dataclasses.replace(TINY, block_type="transformer", dropout_rate=0.0, num_decoder_layers=1)


@pytest.fixture(scope="module")
def setup():
  policy = init_params(CFG, 0)
  rm = reward_model.init_params(RewardModel(CFG), jax.random.key(1))
  # 5 prompts in batches of 4: the last batch is padded and cut.
  prompts = np.random.default_rng(0).integers(2, CFG.vocab_size, (5, 8)).astype(np.int32)
  return policy, rm, prompts, partitioning.make_mesh()


def test_answers_are_scored_by_the_reward_model_with_their_kl(setup):
  policy, rm, prompts, mesh = setup
  other = jax.tree_util.tree_map(lambda x: x * 1.05, policy)  # A reference that differs.
  kwargs = dict(num_samples=2, max_length=4, batch_size=4, seed=7)
  got = evaluate.sample_and_score(CFG, policy, rm, prompts, mesh, reference_params=other,
                                  **kwargs)
  assert got["tokens"].shape == (5, 2, 4) and got["rewards"].shape == (5, 2)
  np.testing.assert_allclose(
      got["rewards"], reward_model.reward(RewardModel(CFG), rm, prompts, got["tokens"]),
      atol=1e-5)
  mine, _ = reward_model.sequence_log_probs(Seq2Seq(CFG), policy, prompts,
                                            got["tokens"])
  ref, _ = reward_model.sequence_log_probs(Seq2Seq(CFG), other, prompts,
                                           got["tokens"])
  np.testing.assert_allclose(got["kl"], (mine - ref).sum(-1), atol=1e-4)
  assert np.abs(got["kl"]).sum() > 0
  np.testing.assert_array_equal(got["lengths"], reward_model.response_lengths(got["tokens"]))
  # The same keys for another policy (here: the same parameters): the same answers; without a
  # reference the KL is 0. The compiled sampler and scorer are reused, not rebuilt.
  hits = evaluate._compiled.cache_info().hits  # pylint: disable=protected-access
  again = evaluate.sample_and_score(CFG, policy, rm, prompts, mesh, **kwargs)
  assert evaluate._compiled.cache_info().hits == hits + 1  # pylint: disable=protected-access
  np.testing.assert_array_equal(again["tokens"], got["tokens"])
  np.testing.assert_allclose(again["kl"], 0.0, atol=1e-6)

  summary = evaluate.summarize(got)
  per_prompt = got["rewards"].mean(-1)
  assert summary["prompts"] == 5 and summary["samples_per_prompt"] == 2
  assert summary["reward_mean"] == pytest.approx(per_prompt.mean(), abs=1e-6)
  assert summary["reward_sem"] == pytest.approx(per_prompt.std(ddof=1) / np.sqrt(5), abs=1e-6)
  assert summary["kl_mean"] == pytest.approx(got["kl"].mean(), abs=1e-6)


def test_policies_load_from_ppo_runs_and_training_checkpoints(setup, tmp_path):
  policy, rm, _, _ = setup
  trained = jax.tree_util.tree_map(lambda x: x * 2.0, policy)
  for name, state in (("train", {"params": trained, "step": np.int32(3)}),
                      ("ppo", {"iteration": np.int32(1), "policy": {"params": trained},
                               "value": {"params": rm}})):
    manager = checkpoints.checkpoint_manager(tmp_path / name)
    manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=ocp.args.JsonSave({})))
    manager.wait_until_finished()
    loaded = evaluate.load_policy(tmp_path / name, CFG)
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(loaded),
                                 jax.tree_util.tree_leaves(trained)):
      np.testing.assert_array_equal(got, want, err_msg=f"{name}{jax.tree_util.keystr(path)}")
