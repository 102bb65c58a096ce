"""Post-training losses against values worked out by hand (see each test's comments)."""
import jax.numpy as jnp
import numpy as np
import pytest

from meena_jax.posttrain import losses


def test_ranking_loss_over_all_six_pairs_of_four_responses():
  # Rewards of the responses ranked 1st..4th: 2, 1, 0.5, -1 (given in a shuffled order).
  # Pair margins: 1, 1.5, 3 (vs 1st), 0.5, 2 (vs 2nd), 1.5 (3rd vs 4th).
  # -log sigmoid(m) = log(1 + e^-m): 0.31326 + 0.20141 + 0.04859 + 0.47408 + 0.12693 + 0.20141
  # = 1.36568; / 6 pairs = 0.22761.
  rewards = jnp.array([[0.5, 2.0, -1.0, 1.0]])
  ranks = jnp.array([[2, 0, 3, 1]])
  loss, stats = losses.ranking_loss(rewards, ranks, jnp.ones((1, 4)))
  assert float(loss) == pytest.approx(0.22761343, abs=1e-6)
  assert float(stats["pairs"]) == 6 and float(stats["correct"]) == 6


def test_ranking_loss_weighs_each_prompt_once_whatever_its_k():
  # Prompt 0: the K=4 case above (0.22761). Prompt 1: a pair (K=2, two slots padded) with
  # margin -1 (the worse one scored higher): log(1 + e) = 1.31326. Mean of the prompts: 0.77044.
  rewards = jnp.array([[0.5, 2.0, -1.0, 1.0], [0.0, 1.0, 9.0, 9.0]])
  ranks = jnp.array([[2, 0, 3, 1], [0, 1, 0, 0]])
  valid = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]])
  loss, stats = losses.ranking_loss(rewards, ranks, valid)
  assert float(loss) == pytest.approx((0.22761343 + 1.31326169) / 2, abs=1e-6)
  assert float(stats["pairs"]) == 7 and float(stats["correct"]) == 6


def test_dpo_loss():
  # beta 0.1. Pair 0: (−10 − −11) − (−12 − −11) = 2 -> margin 0.2, loss log(1 + e^-0.2) =
  # 0.59814. Pair 1: (−5 − −4) − (−6 − −8) = −3 -> margin −0.3, loss log(1 + e^0.3) = 0.85436.
  loss, margins = losses.dpo_loss(jnp.array([-10.0, -5.0]), jnp.array([-12.0, -6.0]),
                                  jnp.array([-11.0, -4.0]), jnp.array([-11.0, -8.0]), beta=0.1)
  np.testing.assert_allclose(margins, [0.2, -0.3], atol=1e-6)
  assert float(loss) == pytest.approx((0.59813887 + 0.85435524) / 2, abs=1e-6)


def test_gae_stops_at_the_last_token_and_ignores_padding():
  # gamma 1, lambda 0.5. Row 0 (3 tokens): deltas d2 = 1 - 0.4 = 0.6, d1 = 0.4 - 0.2 = 0.2,
  # d0 = 0.2 - 0.5 = -0.3; A2 = 0.6, A1 = 0.2 + 0.5 * 0.6 = 0.5, A0 = -0.3 + 0.5 * 0.5 = -0.05;
  # returns A + V = 0.45, 0.7, 1.0. Row 1 (2 tokens, then padding with junk): d1 = 1 - 0.2 =
  # 0.8, d0 = -0.3, A0 = -0.3 + 0.4 = 0.1; the padded position gets 0.
  rewards = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 99.0]])
  values = jnp.array([[0.5, 0.2, 0.4], [0.5, 0.2, 7.0]])
  mask = jnp.array([[1, 1, 1], [1, 1, 0]])
  advantages, returns = losses.gae(rewards, values, mask, gamma=1.0, lam=0.5)
  np.testing.assert_allclose(advantages, [[-0.05, 0.5, 0.6], [0.1, 0.8, 0.0]], atol=1e-6)
  np.testing.assert_allclose(returns, [[0.45, 0.7, 1.0], [0.6, 1.0, 0.0]], atol=1e-6)


def test_clipped_policy_loss():
  # eps 0.2. Ratios 1.5, 0.5, 1.1 with advantages 1, 1, -2; a 4th token is padding.
  # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-2.2, -2.2) = -2.2 -> loss -(1.2 + 0.5 - 2.2)
  # / 3 = 0.16667; two of three ratios left [0.8, 1.2].
  old = jnp.zeros((1, 4))
  new = jnp.log(jnp.array([[1.5, 0.5, 1.1, 5.0]]))
  loss, clip_fraction = losses.clipped_policy_loss(
      new, old, jnp.array([[1.0, 1.0, -2.0, 3.0]]), jnp.array([[1, 1, 1, 0]]), 0.2)
  assert float(loss) == pytest.approx(0.5 / 3, abs=1e-6)
  assert float(clip_fraction) == pytest.approx(2 / 3)


def test_clipped_value_loss():
  # eps 0.2. Token 0: v 1.0, v_old 0.5, R 2: (1 - 2)^2 = 1 vs (0.7 - 2)^2 = 1.69 -> 0.845.
  # Token 1: v 0, v_old 0.1, R 0: 0 vs (0.1 - 0.1 - 0)^2 = 0 -> 0. Mean 0.4225; token 0 clipped.
  loss, clip_fraction = losses.clipped_value_loss(
      jnp.array([[1.0, 0.0]]), jnp.array([[0.5, 0.1]]), jnp.array([[2.0, 0.0]]),
      jnp.ones((1, 2)), 0.2)
  assert float(loss) == pytest.approx(0.4225, abs=1e-6)
  assert float(clip_fraction) == pytest.approx(0.5)


def test_kl_penalised_rewards_put_the_score_on_the_last_token():
  # beta 0.5; log pi - log pi_ref = 0.2, -0.4, 1.0 on three real tokens, then padding.
  log_probs = jnp.array([[-1.0, -2.0, -0.5, -3.0]])
  reference = jnp.array([[-1.2, -1.6, -1.5, -1.0]])
  rewards, kl = losses.kl_penalised_rewards(jnp.array([3.0]), log_probs, reference,
                                            jnp.array([[1, 1, 1, 0]]), beta=0.5)
  np.testing.assert_allclose(kl, [[0.2, -0.4, 1.0, 0.0]], atol=1e-6)
  np.testing.assert_allclose(rewards, [[-0.1, 0.2, 3.0 - 0.5, 0.0]], atol=1e-6)
