"""Runs 2 PPO-ptx iterations of a tiny ET on one device and on a (data=4, model=2) mesh, and a
few reward-model steps on both, and prints as JSON their records and every parameter whose
placement is not what the axis rules say.

Started by tests/test_posttrain_sharded.py with 8 fake CPU devices; not a test itself.
"""
import json
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from meena_jax import partitioning
from meena_jax import state as state_lib
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import ppo, reward_model, rm
from tests.conftest import memory_train_input

# Vocabulary 64, 4 heads, FFN 64: every `model`-split axis divides over 2 devices.
CFG = ModelConfig(block_type="transformer", vocab_size=64, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=1,
                  num_decoder_layers=1, dropout_rate=0.0)
CONFIG = ppo.PPOConfig(beta=0.02, ptx_coef=1.0, rollout_batch=8, minibatches=2, epochs=1,
                       max_length=6, policy_learning_rate=1e-3, value_learning_rate=1e-3)
KEYS = ("reward", "kl", "entropy", "value_loss", "policy_loss", "ptx_loss", "response_length")


def misplaced(params, model, mesh) -> list:
  """Parameters whose sharding differs from the rules applied to their logical names."""
  want = state_lib.param_shardings(model, mesh)
  return [jax.tree_util.keystr(path) for (path, array), sharding in zip(
      jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(want))
          if not array.sharding.is_equivalent_to(sharding, array.ndim)]


def main():
  tokens = jnp.ones((1, 4), jnp.int32)
  policy = nn.unbox(Seq2Seq(CFG).init(jax.random.key(0), tokens, tokens)["params"])
  value = reward_model.init_params(reward_model.RewardModel(CFG), jax.random.key(1))
  rng = np.random.default_rng(0)
  prompts = rng.integers(2, CFG.vocab_size, (32, 8)).astype(np.int32)
  preferences = {"encoder_input_tokens": prompts[:16],
                 "responses": rng.integers(2, CFG.vocab_size, (16, 2, 6)).astype(np.int32),
                 "ranks": np.tile([0, 1], (16, 1)).astype(np.int32),
                 "valid": np.ones((16, 2), np.int32)}
  report = {"devices": jax.device_count()}
  for label, (data, model) in {"1 device": (1, 1), "data=4,model=2": (4, 2)}.items():
    mesh = partitioning.make_mesh(data, model, jax.devices()[:data * model])
    place = lambda tree, m: jax.device_put(tree, state_lib.param_shardings(m, mesh))
    placed_policy = place(policy, Seq2Seq(CFG))
    placed_value = place(value, reward_model.RewardModel(CFG))
    records = ppo.run(model_config=CFG, config=CONFIG, policy_params=placed_policy,
                      reference_params=placed_policy, value_params=placed_value,
                      rm_params=placed_value, prompts=prompts, run_dir=tempfile.mkdtemp(),
                      mesh=mesh, iterations=2,
                      ptx_input=memory_train_input(CFG.vocab_size, 4, {"inputs": 8, "targets": 6}))
    params, rm_records = rm.train(model_config=CFG, train_data=preferences,
                                  run_dir=tempfile.mkdtemp(), mesh=mesh, backbone=placed_policy,
                                  batch_size=8, epochs=1, learning_rate=1e-3, log_every=1)
    report[label] = {"ppo": [{k: r[k] for k in KEYS} for r in records],
                     "rm_losses": [r["loss"] for r in rm_records],
                     "misplaced": misplaced(params, reward_model.RewardModel(CFG), mesh)}
  print(json.dumps(report))


if __name__ == "__main__":
  main()
