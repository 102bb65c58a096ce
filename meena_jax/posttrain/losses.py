"""The post-training objectives as pure functions of arrays: ranking (reward model), DPO, the
KL-penalised PPO reward, GAE and PPO's clipped losses.

Advantages and the clipped surrogate come from ``rlax``; rlax has no clipped value loss, so that
one (PPO2's ``max`` of the clipped and unclipped squared errors) is written here. Every function
takes a ``mask`` (1 on response tokens up to and including EOS, 0 after) and averages over real
tokens only, so padding never moves a gradient.
"""
import jax
import jax.numpy as jnp
import rlax


def masked_mean(x, mask):
  """Mean of ``x`` over entries where ``mask`` is 1 (0 when there are none)."""
  mask = mask.astype(jnp.float32)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# ----------------------------------------------------------------------------------------------
# Preferences.


def ranking_pairs(ranks, valid):
  """``[B, K, K]`` float: 1 where response i is ranked strictly better (lower rank) than j and
  both exist. Ties give no pair."""
  valid = valid.astype(bool)
  better = ranks[:, :, None] < ranks[:, None, :]
  return (better & valid[:, :, None] & valid[:, None, :]).astype(jnp.float32)


def ranking_loss(rewards, ranks, valid):
  """InstructGPT's reward-model loss over every ranked pair of each prompt's K responses.

  ``rewards`` ``[B, K]``; ``ranks`` ``[B, K]`` (0 is best); ``valid`` ``[B, K]`` marks real
  responses (prompts may have fewer than K). Per prompt: ``-mean over its C(K, 2) pairs of log
  sigmoid(r_better - r_worse)``, so a prompt weighs the same whatever its K; then the mean over
  prompts that have a pair. Returns ``(loss, {"pairs", "correct"})`` with correct counting
  pairs where ``r_better > r_worse``.
  """
  pairs = ranking_pairs(ranks, valid)
  margin = rewards[:, :, None] - rewards[:, None, :]
  per_prompt_pairs = jnp.sum(pairs, axis=(1, 2))
  per_prompt = -jnp.sum(pairs * jax.nn.log_sigmoid(margin), axis=(1, 2)) / jnp.maximum(
      per_prompt_pairs, 1.0)
  has_pair = (per_prompt_pairs > 0).astype(jnp.float32)
  loss = jnp.sum(per_prompt * has_pair) / jnp.maximum(jnp.sum(has_pair), 1.0)
  return loss, {"pairs": jnp.sum(pairs), "correct": jnp.sum(pairs * (margin > 0))}


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float):
  """Direct Preference Optimization (Rafailov et al. 2023) on summed response log-probs ``[B]``:
  ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``, meaned. Returns ``(loss,
  margins)``; a positive margin is a pair the implicit reward ``beta * log(pi / ref)`` ranks
  right."""
  margins = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
  return -jnp.mean(jax.nn.log_sigmoid(margins)), margins


# ----------------------------------------------------------------------------------------------
# PPO.


def sequence_end(mask):
  """``[B, T]`` one-hot of each row's last real token (its EOS, or the last one drawn)."""
  mask = mask.astype(jnp.float32)
  last = jnp.maximum(jnp.sum(mask, axis=-1).astype(jnp.int32) - 1, 0)
  return jax.nn.one_hot(last, mask.shape[-1]) * (jnp.sum(mask, -1, keepdims=True) > 0)


def kl_penalised_rewards(score, log_probs, reference_log_probs, mask, beta: float):
  """InstructGPT's per-token reward: ``-beta * (log pi - log pi_ref)`` on every response token,
  plus the reward model's ``score`` ``[B]`` on the last one. Returns ``(rewards [B, T], kl
  [B, T])`` where ``kl`` is the per-token ``log pi - log pi_ref`` of the sampled tokens."""
  mask = mask.astype(jnp.float32)
  kl = (log_probs - reference_log_probs) * mask
  return -beta * kl + score[:, None] * sequence_end(mask), kl


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
  """Generalised advantage estimates and returns ``[B, T]`` with ``rlax``.

  ``values[t]`` is V of the state before token t; the state after a row's last token is
  terminal (value 0, no bootstrap), which the discount ``gamma * mask[t + 1]`` encodes. Entries
  after the last token are garbage and must stay masked.
  """
  mask = mask.astype(jnp.float32)
  discounts = gamma * jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
  values = values * mask
  bootstrapped = jnp.concatenate([values, jnp.zeros_like(values[:, :1])], axis=1)
  advantages = jax.vmap(rlax.truncated_generalized_advantage_estimation,
                        in_axes=(0, 0, None, 0))(rewards * mask, discounts, lam, bootstrapped)
  return advantages * mask, (advantages + values) * mask


def whiten(x, mask):
  """``x`` shifted and scaled to mean 0 and variance 1 over the masked entries."""
  mean = masked_mean(x, mask)
  variance = masked_mean(jnp.square(x - mean), mask)
  return (x - mean) * jax.lax.rsqrt(variance + 1e-8) * mask


def clipped_policy_loss(log_probs, old_log_probs, advantages, mask, epsilon: float = 0.2):
  """PPO's clipped surrogate, per token through ``rlax.clipped_surrogate_pg_loss``, averaged
  over real tokens. Returns ``(loss, clip fraction)``: the share of real tokens whose ratio
  left ``[1 - epsilon, 1 + epsilon]``."""
  ratios = jnp.exp(log_probs - old_log_probs)
  per_token = jax.vmap(jax.vmap(
      lambda r, a: rlax.clipped_surrogate_pg_loss(r[None], a[None], epsilon)))(
          ratios, jax.lax.stop_gradient(advantages))
  clipped = (jnp.abs(ratios - 1.0) > epsilon).astype(jnp.float32)
  return masked_mean(per_token, mask), masked_mean(clipped, mask)


def clipped_value_loss(values, old_values, returns, mask, epsilon: float = 0.2):
  """PPO2's value loss: ``0.5 * max((v - R)^2, (v_old + clip(v - v_old, -eps, eps) - R)^2)``
  over real tokens (rlax has no clipped value loss). Returns ``(loss, clip fraction)``."""
  returns = jax.lax.stop_gradient(returns)
  clipped_values = old_values + jnp.clip(values - old_values, -epsilon, epsilon)
  loss = 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(clipped_values - returns))
  clipped = (jnp.abs(values - old_values) > epsilon).astype(jnp.float32)
  return masked_mean(loss, mask), masked_mean(clipped, mask)


def token_log_probs(logits, tokens):
  """``(log p of each token [B, T], entropy of each position [B, T])`` from float32 logits."""
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  chosen = jnp.take_along_axis(log_p, tokens[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)
  return chosen, entropy
