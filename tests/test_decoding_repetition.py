"""The cross-turn repetition filter and the choice among ranked candidates."""
import numpy as np

from meena_jax import repetition


def rows(*candidates, length=8):
  """Candidates as decoding returns them: EOS after the tokens, then padding."""
  out = np.zeros((len(candidates), length), np.int32)
  for i, c in enumerate(candidates):
    out[i, :len(c) + 1] = list(c) + [repetition.EOS_ID]
  return out


def test_response_tokens_stop_at_eos():
  assert repetition.response_tokens([5, 6, 1, 7, 0]) == [5, 6]
  assert repetition.response_tokens([5, 6, 7]) == [5, 6, 7]  # No EOS: the whole row.


def test_a_candidate_sharing_an_ngram_with_an_earlier_turn_is_dropped():
  turns = [[10, 11, 12, 13, 14], [20, 21, 22]]
  assert repetition.repetition([9, 11, 12, 13, 8], turns, 3) == (
      "shares the 3-gram [11, 12, 13] with the turn 2 back")
  assert repetition.repetition([9, 11, 12, 8, 13], turns, 3) is None  # Only 2 in a row.
  assert repetition.repetition([20, 21, 22], turns, 3) is not None
  assert repetition.repetition([20, 21, 22], turns, 4) is None  # Longer than the overlap.
  assert repetition.repetition([20, 21, 22], turns, 0) is None  # Filter off.


def test_a_candidate_repeating_itself_is_dropped():
  assert repetition.repetition([4, 5, 6, 4, 5, 6], [], 3) == (
      "repeats the 3-gram [4, 5, 6] within itself")
  assert repetition.repetition([4, 5, 6, 4, 5, 7], [], 3) is None


def test_choose_skips_dropped_candidates_in_rank_order():
  turns = [[30, 31, 32]]
  tokens = rows([30, 31, 32, 5], [7, 7, 7, 7], [8, 9, 10])
  choice = repetition.choose(tokens, np.array([-1.0, -2.0, -3.0]), turns, 3)
  assert (choice.index, choice.tokens, choice.score, choice.fell_back) == (2, [8, 9, 10], -3.0,
                                                                          False)
  assert [rank for rank, _ in choice.dropped] == [0, 1]
  assert "turn 1 back" in choice.dropped[0][1] and "within itself" in choice.dropped[1][1]


def test_when_every_candidate_is_dropped_the_best_unfiltered_is_returned_and_flagged():
  tokens = rows([30, 31, 32], [31, 32, 33])
  choice = repetition.choose(tokens, np.array([-1.0, -2.0]), [[30, 31, 32, 33]], 2)
  assert choice.fell_back and choice.index == 0 and choice.tokens == [30, 31, 32]
  assert len(choice.dropped) == 2
