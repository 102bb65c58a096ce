"""Preference data: hh-rlhf pairs and K-ranked comparisons -> one record type -> token arrays.

Two line formats, told apart by their keys (``.jsonl`` or ``.jsonl.gz``):

  {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}        # hh-rlhf
  {"context": ["turn", ...], "responses": ["a", "b", ...], "ranking": [2, 1, ...]}

``ranking[i]`` is the rank of ``responses[i]``: lower is better, equal ranks are ties (no pair).
An hh-rlhf pair's context is the turns both sides share, cut back to end on a Human turn; each
side's response is everything after the next ``Assistant:`` marker (a few released responses
themselves contain turn markers; they stay part of the response). A line that cannot be read
stops the run naming ``file:line``.

Tokens: contexts go through the training task's own turn joining and left truncation
(``seqio_tasks.tokenize_contexts``); responses are trimmed to ``target_length - 1`` pieces plus
EOS. A batch element is one prompt with up to ``K`` responses, so all its ranked pairs meet in one
element (InstructGPT's batching).
"""
import dataclasses
import pathlib
import re
from typing import Sequence

import numpy as np

from meena_jax import jsonl

EOS_ID = 1
HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant: "
_MARKER = re.compile(r"\n\n(Human|Assistant): ")


class BadComparison(ValueError):
  """A preference line that cannot be read; the message starts with ``file:line``."""


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One prompt and its ranked responses (``ranks[i]`` of ``responses[i]``; lower is better)."""
  context: tuple
  responses: tuple
  ranks: tuple
  where: str = ""

  def pairs(self):
    """(better, worse) response indices of every strictly ranked pair."""
    return [(i, j) for i in range(len(self.ranks)) for j in range(len(self.ranks))
            if self.ranks[i] < self.ranks[j]]


def split_turns(text: str, where: str, side: str = "the text") -> list:
  """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> ``[("Human", "a", start, end), ...]``; the
  offsets delimit the whole turn, marker included."""
  markers = list(_MARKER.finditer(text))
  if not markers or markers[0].start() != 0:
    raise BadComparison(f"{where}: expected {side} to start with {HUMAN!r}")
  return [(m[1], text[m.end():(markers[i + 1].start() if i + 1 < len(markers) else len(text))],
           m.start(), markers[i + 1].start() if i + 1 < len(markers) else len(text))
          for i, m in enumerate(markers)]


def from_hh(record: dict, where: str) -> Comparison:
  """An hh-rlhf ``{"chosen", "rejected"}`` pair -> a K=2 ``Comparison`` (chosen ranked 0)."""
  sides = [record["chosen"], record["rejected"]]
  if not all(isinstance(s, str) for s in sides):
    raise BadComparison(f"{where}: 'chosen' and 'rejected' must be strings")
  turns = [split_turns(s, where, f"the {k} side") for s, k in zip(sides, ("chosen", "rejected"))]
  shared = 0
  while (shared < min(map(len, turns)) and turns[0][shared][:2] == turns[1][shared][:2]):
    shared += 1
  while shared and turns[0][shared - 1][0] != "Human":
    shared -= 1
  if not shared:
    raise BadComparison(f"{where}: the two sides share no Human turn")
  responses = []
  for side, side_turns, name in zip(sides, turns, ("chosen", "rejected")):
    if len(side_turns) <= shared or side_turns[shared][0] != "Assistant":
      raise BadComparison(f"{where}: the {name} side has no Assistant turn after the shared "
                          f"context")
    responses.append(side[side_turns[shared][2] + len(ASSISTANT):].strip())
  context = tuple(t[1].strip() for t in turns[0][:shared])
  return Comparison(context, tuple(responses), (0, 1), where)


def from_ranked(record: dict, where: str) -> Comparison:
  """A ``{"context", "responses", "ranking"}`` record -> ``Comparison``, checked."""
  context, responses, ranking = record["context"], record["responses"], record["ranking"]
  if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
    raise BadComparison(f"{where}: 'context' must be a list of strings")
  if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
    raise BadComparison(f"{where}: 'responses' must be a list of strings")
  if len(responses) < 2:
    raise BadComparison(f"{where}: need at least 2 responses to rank, got {len(responses)}")
  if (not isinstance(ranking, list) or len(ranking) != len(responses)
      or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranking)):
    raise BadComparison(f"{where}: 'ranking' must be {len(responses)} integers, one per "
                        f"response (lower is better)")
  if len(set(ranking)) < 2:
    raise BadComparison(f"{where}: every response has the same rank; nothing to learn")
  return Comparison(tuple(context), tuple(responses), tuple(ranking), where)


def read_comparisons(path) -> list:
  """Every comparison of a ``.jsonl`` or ``.jsonl.gz`` file; blank lines are skipped."""
  path = pathlib.Path(path).expanduser()
  comparisons = []
  for where, record in jsonl.read(path, BadComparison):
    if isinstance(record, dict) and {"chosen", "rejected"} <= record.keys():
      comparisons.append(from_hh(record, where))
    elif isinstance(record, dict) and {"context", "responses", "ranking"} <= record.keys():
      comparisons.append(from_ranked(record, where))
    else:
      raise BadComparison(f'{where}: expected {{"chosen", "rejected"}} or {{"context", '
                          f'"responses", "ranking"}}')
  if not comparisons:
    raise BadComparison(f"{path}: no comparisons in the file")
  return comparisons


def shorter_answer_accuracy(comparisons: Sequence[Comparison]) -> float:
  """Share of ranked pairs where the better response has fewer characters (ties count as
  wrong): the baseline a reward model has to beat."""
  pairs = [(c.responses[i], c.responses[j]) for c in comparisons for i, j in c.pairs()]
  return sum(len(better) < len(worse) for better, worse in pairs) / max(len(pairs), 1)


def encode_comparisons(comparisons: Sequence[Comparison], vocabulary, input_length: int,
                       target_length: int, max_responses: int = 0,
                       context_turns: int = 7) -> dict:
  """Numpy arrays, one row per prompt: ``encoder_input_tokens`` ``[N, input_length]``,
  ``responses`` ``[N, K, target_length]`` (EOS included, 0 after), ``ranks`` and ``valid``
  ``[N, K]``. K is the most responses of any prompt (or ``max_responses``)."""
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel  # TensorFlow.
  k = max_responses or max(len(c.responses) for c in comparisons)
  contexts = seqio_tasks.tokenize_contexts(
      [list(c.context)[-context_turns:] for c in comparisons], vocabulary, input_length)
  n = len(comparisons)
  arrays = {"encoder_input_tokens": np.zeros((n, input_length), np.int32),
            "responses": np.zeros((n, k, target_length), np.int32),
            "ranks": np.zeros((n, k), np.int32), "valid": np.zeros((n, k), np.int32)}
  for row, (comparison, (ids, _)) in enumerate(zip(comparisons, contexts)):
    if len(comparison.responses) > k:
      raise ValueError(f"{comparison.where}: {len(comparison.responses)} responses, more than "
                       f"max_responses={k}")
    arrays["encoder_input_tokens"][row, :len(ids)] = ids
    for col, (response, rank) in enumerate(zip(comparison.responses, comparison.ranks)):
      pieces = list(vocabulary.encode(response))[:target_length - 1] + [EOS_ID]
      arrays["responses"][row, col, :len(pieces)] = pieces
      arrays["ranks"][row, col], arrays["valid"][row, col] = rank, 1
  return arrays
