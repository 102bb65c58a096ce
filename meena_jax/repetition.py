"""Meena's cross-turn repetition filter, and the choice of a response among ranked candidates.

Input: ``decoding.Candidates`` of one context (best first) and the conversation's earlier turns
as token ids. Output: a ``Choice`` naming the winner and why each better-scored candidate was
dropped. Meena drops candidates that repeat long sub-sequences of earlier turns before ranking
(it raised SSA by 5 points); a candidate that repeats itself is dropped too. Works on token ids,
so it needs no vocabulary.
"""
import dataclasses
from typing import Optional, Sequence

import numpy as np

EOS_ID = 1


def ngrams(tokens: Sequence[int], n: int) -> list[tuple]:
  return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def response_tokens(row: Sequence[int]) -> list[int]:
  """A candidate's tokens before its EOS (EOS and padding dropped)."""
  tokens = [int(t) for t in row]
  if EOS_ID in tokens:
    tokens = tokens[:tokens.index(EOS_ID)]
  return [t for t in tokens if t > 0]


def repetition(candidate: Sequence[int], turns: Sequence[Sequence[int]],
               n: int) -> Optional[str]:
  """Why ``candidate`` repeats itself or an earlier turn (an ``n``-gram in common), or None.
  ``n=0`` never drops."""
  if n < 1:
    return None
  grams = ngrams(candidate, n)
  seen = set()
  for gram in grams:
    if gram in seen:
      return f"repeats the {n}-gram {list(gram)} within itself"
    seen.add(gram)
  for age, turn in enumerate(reversed(turns), start=1):
    common = seen.intersection(ngrams(list(turn), n))
    if common:
      return f"shares the {n}-gram {list(min(common))} with the turn {age} back"
  return None


@dataclasses.dataclass
class Choice:
  """The chosen candidate of one context.

  Attributes:
    index: its rank among the candidates (0 = the best score).
    tokens: its tokens before EOS.
    score: its decoding score.
    dropped: (rank, reason) of each candidate the filter removed.
    fell_back: every candidate was dropped, so the best unfiltered one was returned.
  """
  index: int
  tokens: list
  score: float
  dropped: list
  fell_back: bool


def choose(tokens: np.ndarray, scores: np.ndarray, turns: Sequence[Sequence[int]],
           n: int) -> Choice:
  """The best-scored candidate (``tokens`` ``[N, L]`` sorted best first) that passes the
  filter; the best unfiltered one, flagged, when none passes."""
  dropped = []
  for index, row in enumerate(tokens):
    candidate = response_tokens(row)
    reason = repetition(candidate, turns, n)
    if reason is None:
      return Choice(index, candidate, float(scores[index]), dropped, fell_back=False)
    dropped.append((index, reason))
  return Choice(0, response_tokens(tokens[0]), float(scores[0]), dropped, fell_back=True)
