"""Seconds per PPO-ptx iteration, split into rollout (the jitted sampler), scoring (policy,
reference, value and reward model in one jitted call) and update (epochs x minibatches of the
clipped losses plus the ptx LM loss), as ``peer-bench/v1`` records.

  python bench/ppo_iteration.py --label tiny  --d-model 256 --heads 4 --d-ff 1024 --layers-dec 2
  python bench/ppo_iteration.py --label small --d-model 512 --heads 8 --d-ff 2048 --layers-dec 6

Random parameters and prompts: timing depends on the weights only through response length, and
random weights over an 8K vocabulary almost never draw EOS, so responses run to ``--resp-len``
(the mean is reported). The first iteration compiles; it is reported as ``compile_s`` and left
out of the timings.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  common.add_shape_flags(parser, layers_enc=1, layers_dec=2, ctx_len=64, resp_len=32)
  parser.add_argument("--rollout-batch", type=int, default=32)
  parser.add_argument("--minibatches", type=int, default=4)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--ptx-batch", type=int, default=8)
  parser.add_argument("--iterations", type=int, default=4, help="timed, after the first")
  parser.add_argument("--jsonl")
  args = parser.parse_args()

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from meena_jax import partitioning
  from meena_jax.model import Seq2Seq
  from meena_jax.posttrain import ppo, reward_model

  cfg = common.model_config(args, dropout_rate=0.0)
  config = ppo.PPOConfig(rollout_batch=args.rollout_batch, minibatches=args.minibatches,
                         epochs=args.epochs, max_length=args.resp_len, ptx_coef=27.8)
  tokens = jnp.ones((1, 4), jnp.int32)
  policy = nn.unbox(jax.jit(Seq2Seq(cfg).init)(jax.random.key(0), tokens, tokens)["params"])
  value = reward_model.init_params(reward_model.RewardModel(cfg), jax.random.key(1))
  rng = np.random.default_rng(0)
  prompts = rng.integers(2, args.vocab, (4 * args.rollout_batch, args.ctx_len)).astype(np.int32)

  class RandomPtx:
    """Dense random pretraining batches (``ppo.run``'s ``ptx_input``; nothing to resume)."""

    def __next__(self):
      targets = rng.integers(2, args.vocab, (args.ptx_batch, args.resp_len)).astype(np.int32)
      return {"encoder_input_tokens": rng.integers(2, args.vocab, (args.ptx_batch, args.ctx_len)
                                                   ).astype(np.int32),
              "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
              "decoder_target_tokens": targets}

    def state(self):
      return {}

  records = ppo.run(model_config=cfg, config=config, policy_params=policy,
                    reference_params=policy, value_params=value, rm_params=value,
                    prompts=prompts, run_dir=tempfile.mkdtemp(), mesh=partitioning.make_mesh(),
                    iterations=args.iterations + 1, ptx_input=RandomPtx(), progress=False,
                    checkpoint_every=10 ** 9)
  first, timed = records[0], records[1:]
  results = {part: common.summary([r[f"{part}_s"] for r in timed])
             for part in ("rollout", "score", "update")}
  results["iteration_s"] = common.summary(
      [r["rollout_s"] + r["score_s"] + r["update_s"] for r in timed])
  results["compile_s"] = first["rollout_s"] + first["score_s"] + first["update_s"]
  results["response_length"] = sum(r["response_length"] for r in timed) / len(timed)
  results["peak_rss_mib"] = common.peak_rss_mib()
  common.emit("ppo_iteration", args.label, vars(args), results, args.jsonl)


if __name__ == "__main__":
  main()
