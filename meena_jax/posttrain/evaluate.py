"""Held-out evaluation of post-trained policies (SFT, PPO, DPO) on the same footing.

``sample_and_score``: each policy answers the same held-out prompts with the jitted sampler
(``num_samples`` per prompt, the same keys for every policy), and the reward model scores the
answers at their EOS; with a reference, the KL of each answer (``sum log pi - log pi_ref`` of
its tokens, the quantity PPO penalises). ``summarize`` reduces that to the mean reward with its
standard error over prompts. ``load_policy`` reads a policy from a PPO run or from an ordinary
training (SFT, DPO) checkpoint.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from meena_jax import checkpoints, decoding, input_pipeline
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import ppo, reward_model
from meena_jax.posttrain.reward_model import RewardModel


def load_policy(checkpoint, model_config: ModelConfig, mesh=None):
  """Policy parameters of ``checkpoint``: a PPO run's policy, or a training run's (SFT, DPO)
  parameters. Post-training knows PPO's layout; ``checkpoints`` is told the subtree."""
  subtree = ppo.POLICY if ppo.POLICY in checkpoints.state_keys(checkpoint) else ""
  return checkpoints.load_params(checkpoint, Seq2Seq(model_config), mesh, subtree)


def _score(policy: Seq2Seq, value: RewardModel, policy_params, rm_params, reference_params,
           prompts, tokens):
  """RM scores ``[b, n]`` and summed KL to the reference ``[b, n]`` of ``[b, n, T]`` answers."""
  rewards = reward_model.reward(value, rm_params, prompts, tokens)
  log_probs, _ = reward_model.sequence_log_probs(policy, policy_params, prompts, tokens)
  reference, _ = reward_model.sequence_log_probs(policy, reference_params, prompts, tokens)
  return rewards, (log_probs - reference).sum(-1)


@functools.lru_cache(maxsize=8)
def _compiled(model_config: ModelConfig, num_samples: int, max_length: int, temperature: float,
              mesh):
  """The jitted sampler and scorer, built once per setting so that every policy reuses them."""
  policy, value = Seq2Seq(model_config), RewardModel(model_config)
  sample = decoding.sampler(policy, decoding.DecodingConfig(
      num_samples=num_samples, temperature=temperature, max_length=max_length,
      repetition_ngram=0), mesh)
  return sample, jax.jit(functools.partial(_score, policy, value))


def sample_and_score(model_config: ModelConfig, policy_params, rm_params, prompts: np.ndarray,
                     mesh, *, reference_params=None, num_samples: int = 4,
                     max_length: int = 32, temperature: float = 1.0, batch_size: int = 32,
                     seed: int = 0) -> dict:
  """``num_samples`` answers per ``[N, s]`` prompt from the policy (keys from ``seed`` and the
  batch, so every policy gets the same ones), scored by the reward model ``rm_params``.

  Returns ``tokens`` ``[N, n, T]`` (sample-and-rank order: most likely first), ``rewards``
  ``[N, n]``, ``kl`` ``[N, n]`` (summed ``log pi - log pi_ref``; zeros without a reference) and
  ``lengths`` ``[N, n]`` (tokens up to and including EOS).
  """
  sample, score = _compiled(model_config, num_samples, max_length, temperature, mesh)
  reference_params = policy_params if reference_params is None else reference_params
  key, rows = jax.random.key(seed), len(prompts)
  out = {"tokens": [], "rewards": [], "kl": []}
  for start in range(0, rows, batch_size):
    index = np.arange(start, start + batch_size)
    index[index >= rows] = 0  # The last batch is padded by repeating row 0, then cut.
    batch = input_pipeline.to_global({"prompts": prompts[index]}, mesh)["prompts"]
    tokens = sample(policy_params, batch, jax.random.fold_in(key, start)).tokens
    rewards, kl = score(policy_params, rm_params, reference_params, batch, tokens)
    keep = min(batch_size, rows - start)
    for name, array in (("tokens", tokens), ("rewards", rewards), ("kl", kl)):
      out[name].append(np.asarray(jax.device_get(array))[:keep])
  out = {k: np.concatenate(v) for k, v in out.items()}
  out["lengths"] = np.asarray(reward_model.response_lengths(jnp.asarray(out["tokens"])))
  return out


def summarize(result: dict) -> dict:
  """Mean RM reward (standard error over prompts, each the mean of its samples), mean KL to
  the reference and mean answer length."""
  per_prompt = result["rewards"].mean(-1)
  return {"prompts": int(len(per_prompt)), "samples_per_prompt": int(result["rewards"].shape[1]),
          "reward_mean": float(per_prompt.mean()),
          "reward_sem": float(per_prompt.std(ddof=1) / np.sqrt(max(len(per_prompt), 1))),
          "kl_mean": float(result["kl"].mean()),
          "length_mean": float(result["lengths"].mean())}
