"""Preference files: hh-rlhf pairs and K-ranked records parse to one form, bad lines are named,
the length baseline matches the data's README, and tokens come out in the batch layout."""
import gzip
import json
import pathlib

import numpy as np
import pytest
import seqio

from meena_jax.posttrain import preference_data

HH = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf_harmless"


def write(path, records):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
  return path


def test_hh_pair_context_is_the_shared_turns_and_response_the_last_assistant_turn(tmp_path):
  shared = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke"
  path = write(tmp_path / "p.jsonl", [
      {"chosen": shared + "\n\nAssistant: Why did the chicken...",
       "rejected": shared + "\n\nAssistant: No.\n\nHuman: Rude"},  # The turn marker stays.
  ])
  [comparison] = preference_data.read_comparisons(path)
  assert comparison.context == ("Hi there", "Hello!", "Tell me a joke")
  assert comparison.responses == ("Why did the chicken...", "No.\n\nHuman: Rude")
  assert comparison.ranks == (0, 1) and comparison.pairs() == [(0, 1)]


def test_k_ranked_records_give_every_strictly_ranked_pair(tmp_path):
  path = tmp_path / "r.jsonl.gz"
  with gzip.open(path, "wt") as f:
    f.write(json.dumps({"context": ["a", "b"], "responses": ["w", "x", "y", "z"],
                        "ranking": [3, 1, 2, 1]}) + "\n")
  [comparison] = preference_data.read_comparisons(path)
  assert sorted(comparison.pairs()) == [(1, 0), (1, 2), (2, 0), (3, 0), (3, 2)]  # 1, 3 tie.


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: b"}, 'expected {"chosen", "rejected"}'),
    ({"chosen": "Human: a", "rejected": "\n\nHuman: a\n\nAssistant: b"}, "start with"),
    ({"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: a\n\nAssistant: b"},
     "the chosen side has no Assistant turn"),
    ({"context": ["a"], "responses": ["x", "y"], "ranking": [1]}, "'ranking' must be 2"),
    ({"context": ["a"], "responses": ["x", "y"], "ranking": [1, 1]}, "same rank"),
    ({"context": "a", "responses": ["x", "y"], "ranking": [1, 2]}, "'context' must be"),
])
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, line, message):
  good = {"context": ["a"], "responses": ["x", "y"], "ranking": [0, 1]}
  path = write(tmp_path / "bad.jsonl", [good, "", line])
  with pytest.raises(preference_data.BadComparison, match=rf"bad.jsonl:3: .*{message}"):
    preference_data.read_comparisons(path)


@pytest.mark.skipif(not HH.is_dir(), reason=f"{HH} is absent (the shared preference data)")
def test_shorter_answer_baseline_of_hh_rlhf_harmless():
  train = preference_data.read_comparisons(HH / "train.jsonl.gz")
  validation = preference_data.read_comparisons(HH / "validation.jsonl.gz")
  assert (len(train), len(validation)) == (1810, 197)
  assert preference_data.shorter_answer_accuracy(validation) == pytest.approx(109 / 197)  # 55.3%
  assert round(100 * preference_data.shorter_answer_accuracy(train), 1) == 55.5


def test_encoded_comparisons_have_one_row_per_prompt_and_eos_terminated_responses():
  vocabulary = seqio.ByteVocabulary()
  comparisons = [preference_data.Comparison(("hi", "there"), ("abc", "de"), (1, 0)),
                 preference_data.Comparison(("x",), ("long response here", "y", "zz"),
                                            (0, 1, 2))]
  arrays = preference_data.encode_comparisons(comparisons, vocabulary, input_length=6,
                                              target_length=5)
  assert arrays["responses"].shape == (2, 3, 5)
  np.testing.assert_array_equal(arrays["valid"], [[1, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(arrays["ranks"][0, :2], [1, 0])
  assert list(arrays["responses"][0, 0]) == list(vocabulary.encode("abc")) + [1, 0]
  assert list(arrays["responses"][1, 0]) == list(vocabulary.encode("long"))[:4] + [1]  # Cut.
  # The context keeps its most recent 6 tokens (bytes): the end of "hi <turn> there".
  assert vocabulary.decode(arrays["encoder_input_tokens"][0].tolist()) == " there"
