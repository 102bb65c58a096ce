"""Meena's message cleaning and filters: pure functions, one per rule, shared by every source.

Cleaning runs first (HTML entities, quoted parent text, deleted/removed markers); then each filter
answers "remove this message?" for one rule. ``conversations.filter_messages`` applies them in
the order of ``REASONS`` and removes a failing message together with its whole subtree.

Choices the paper leaves open (Adiwardana et al. 2020, section 4):
- "70% alphabetic" counts letters among non-whitespace characters.
- "overlaps highly with its parent": the share of the reply's word trigrams (lower-cased) that
  also occur in the parent is at least 0.5; replies under three words are never flagged.
- "offensive": alt-profanity-check's linear model (a maintained package, fast enough to score
  every message) with probability >= 0.9; that removes about 5% of reddit2015's turns.
"""
import html
import re
from typing import Iterable, Optional, Sequence

import numpy as np

MIN_SUBWORDS, MAX_SUBWORDS = 2, 128
MIN_ALPHABETIC_FRACTION = 0.7
MAX_OCCURRENCES = 100
PARENT_OVERLAP_NGRAM, MAX_PARENT_OVERLAP = 3, 0.5
OFFENSIVE_THRESHOLD = 0.9

# Reasons in the order they are checked; statistics count the first one that applies.
REASONS = ("deleted", "empty", "url", "bot_author", "alphabetic", "subword_count", "frequent",
           "parent_overlap", "offensive")

_URL = re.compile(r"(https?://|ftp://|www\.|\b[\w-]+\.(com|org|net|edu|gov|io|co|ly|be|gl)"
                  r"(/|\b))", re.IGNORECASE)
_DELETED = {"[deleted]", "[removed]"}
_WHITESPACE = re.compile(r"\s+")


def decode_entities(text: str) -> str:
  """HTML entities decoded until nothing changes (Reddit double-escapes: ``&amp;gt;``)."""
  for _ in range(3):
    decoded = html.unescape(text)
    if decoded == text:
      break
    text = decoded
  return text


def _longest_quoted_prefix(text: str, parent: str) -> int:
  """Length of the longest prefix of ``text`` that occurs in ``parent`` (binary search: if a
  prefix occurs, every shorter one does too)."""
  low, high = 0, len(text)
  while low < high:
    mid = (low + high + 1) // 2
    if text[:mid] in parent:
      low = mid
    else:
      high = mid - 1
  return low


def _strip_inline_quotes(text: str, parent: str) -> str:
  """Each ``>`` followed by text found in ``parent`` (10+ characters, or all that follows)
  loses that text; any other ``>`` (``3 > 2``) stays."""
  pieces = text.split(">")
  kept = [pieces[0]]
  for piece in pieces[1:]:
    body = piece.lstrip()
    quoted = _longest_quoted_prefix(body, parent) if parent else 0
    kept.append(body[quoted:] if quoted and quoted >= min(len(body), 10) else ">" + piece)
  return "".join(kept)


def strip_quotes(text: str, parent: Optional[str] = None) -> str:
  """Removes text quoted from the parent.

  In a message of several lines, lines starting with ``>`` are Reddit quotes and are dropped.
  Where line breaks were lost (reddit2015 joins lines), a ``>`` followed by text found in the
  parent loses that text.
  """
  lines = text.split("\n")
  if len([line for line in lines if line.strip()]) > 1:
    lines = [line for line in lines if not line.lstrip().startswith(">")]
  parent = _WHITESPACE.sub(" ", parent).strip() if parent else ""
  text = " ".join(_strip_inline_quotes(line, parent) if ">" in line else line for line in lines)
  return _WHITESPACE.sub(" ", text).strip()


def clean_message(text: str, parent: Optional[str] = None) -> Optional[str]:
  """Entities decoded and quotes stripped; None for a ``[deleted]``/``[removed]`` message."""
  if text.strip() in _DELETED:
    return None
  return strip_quotes(decode_entities(text), None if parent is None else decode_entities(parent))


def has_url(text: str) -> bool:
  return _URL.search(text) is not None


def is_bot_author(author: Optional[str]) -> bool:
  return author is not None and "bot" in author.lower()


def alphabetic_fraction(text: str) -> float:
  chars = [c for c in text if not c.isspace()]
  return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def too_few_alphabetic(text: str) -> bool:
  return alphabetic_fraction(text) < MIN_ALPHABETIC_FRACTION


def bad_subword_count(num_subwords: int) -> bool:
  return not MIN_SUBWORDS <= num_subwords <= MAX_SUBWORDS


def too_frequent(occurrences: int) -> bool:
  """``occurrences`` is the exact text's count over the whole source (a first pass)."""
  return occurrences > MAX_OCCURRENCES


def _word_ngrams(text: str, n: int) -> set:
  words = text.lower().split()
  return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def parent_overlap(text: str, parent: str, n: int = PARENT_OVERLAP_NGRAM) -> float:
  """Share of the reply's word n-grams that also occur in its parent (0 for short replies)."""
  grams = _word_ngrams(text, n)
  return len(grams & _word_ngrams(parent, n)) / len(grams) if grams else 0.0


def overlaps_parent(text: str, parent: Optional[str]) -> bool:
  return parent is not None and parent_overlap(text, parent) >= MAX_PARENT_OVERLAP


def offensive_probabilities(texts: Sequence[str]) -> np.ndarray:
  """alt-profanity-check's probability that each text is offensive (batched: ~40K texts/s)."""
  if not texts:
    return np.zeros((0,))
  from profanity_check import predict_prob  # Loads a scikit-learn model: import on first use.
  return np.asarray(predict_prob(list(texts)))


def is_offensive(probabilities: Iterable[float], threshold: float = OFFENSIVE_THRESHOLD):
  return np.asarray(list(probabilities)) >= threshold
