"""From message trees to Meena's (context, response) examples, with filter statistics.

Every source becomes a list of ``Message``s linked by ``parent_id`` (a linear conversation is a
chain). ``filter_messages`` cleans each text, removes a message that fails a filter *with its
whole subtree*, and counts why; ``make_examples`` turns each surviving reply into one example
whose context is its (up to) 7 nearest ancestors. One example per reply is what "every path
through the tree is a conversation" yields, without repeating shared prefixes.
"""
import collections
import dataclasses
from typing import Callable, Iterable, Optional, Sequence

from meena_tasks import text_filters

MAX_CONTEXT_TURNS = 7


@dataclasses.dataclass(frozen=True)
class Message:
  id: str
  parent_id: Optional[str]
  text: str
  author: Optional[str] = None
  speaker: str = ""  # A role label where the source has one ("A"/"B" in chitchat).


def chain(conversation_id: str, turns: Sequence[str],
          speakers: Optional[Sequence[str]] = None) -> list[Message]:
  """A linear conversation as messages ``<id>/0``, ``<id>/1``, ... each replying to the last."""
  speakers = speakers or [""] * len(turns)
  return [Message(f"{conversation_id}/{i}", f"{conversation_id}/{i - 1}" if i else None, text,
                  speaker=speaker) for i, (text, speaker) in enumerate(zip(turns, speakers))]


@dataclasses.dataclass
class FilterStatistics:
  """What a builder reports per split: counts in, out, and per removal reason."""
  messages_in: int = 0
  removed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  removed_with_parent: int = 0
  messages_out: int = 0
  conversations_out: int = 0
  examples_out: int = 0
  malformed_skipped: int = 0

  def as_dict(self) -> dict:
    return {"messages_in": self.messages_in,
            "removed": {r: self.removed.get(r, 0) for r in text_filters.REASONS},
            "removed_with_parent": self.removed_with_parent,
            "messages_out": self.messages_out, "conversations_out": self.conversations_out,
            "examples_out": self.examples_out, "malformed_skipped": self.malformed_skipped}


def clean_messages(messages: Sequence[Message]) -> list[Optional[Message]]:
  """Entity decoding and quote stripping (which needs the parent); None where deleted."""
  raw = {m.id: m.text for m in messages}
  cleaned = []
  for m in messages:
    text = text_filters.clean_message(m.text, raw.get(m.parent_id))
    cleaned.append(None if text is None else dataclasses.replace(m, text=text))
  return cleaned


def text_occurrences(messages: Iterable[Optional[Message]]) -> collections.Counter:
  """The count pass for the "occurs more than 100 times" rule."""
  return collections.Counter(m.text for m in messages if m is not None)


def filter_messages(messages: Sequence[Message], cleaned: Sequence[Optional[Message]],
                    count_subwords: Callable[[list[str]], list[int]],
                    occurrences: collections.Counter,
                    stats: FilterStatistics) -> list[Message]:
  """Applies every filter; a removed message takes its whole subtree with it.

  ``cleaned`` is ``clean_messages(messages)``. Returns survivors (cleaned) in input order.
  """
  stats.messages_in += len(messages)
  by_id = {c.id: c for c in cleaned if c is not None}
  reason: dict[str, str] = {}
  for m, c in zip(messages, cleaned):
    if c is None:
      reason[m.id] = "deleted"
    elif not c.text:
      reason[m.id] = "empty"
    elif text_filters.has_url(c.text):
      reason[m.id] = "url"
    elif text_filters.is_bot_author(c.author):
      reason[m.id] = "bot_author"
    elif text_filters.too_few_alphabetic(c.text):
      reason[m.id] = "alphabetic"
  pending = [c for c in cleaned if c is not None and c.id not in reason]
  for c, n in zip(pending, count_subwords([c.text for c in pending])):
    if text_filters.bad_subword_count(n):
      reason[c.id] = "subword_count"
    elif text_filters.too_frequent(occurrences[c.text]):
      reason[c.id] = "frequent"
    elif text_filters.overlaps_parent(
        c.text, by_id[c.parent_id].text if c.parent_id in by_id else None):
      reason[c.id] = "parent_overlap"
  pending = [c for c in pending if c.id not in reason]
  probabilities = text_filters.offensive_probabilities([c.text for c in pending])
  for c, offensive in zip(pending, text_filters.is_offensive(probabilities)):
    if offensive:
      reason[c.id] = "offensive"
  stats.removed.update(reason.values())

  # Subtree removal: walk from the roots; a child of a removed message is removed too.
  children = collections.defaultdict(list)
  ids = {m.id for m in messages}
  for m in messages:
    children[m.parent_id if m.parent_id in ids else None].append(m.id)
  kept, stack = set(), [(root, True) for root in children[None]]
  while stack:
    message_id, parent_kept = stack.pop()
    if message_id not in reason:
      if parent_kept:
        kept.add(message_id)
      else:
        stats.removed_with_parent += 1
    alive = parent_kept and message_id in kept
    stack.extend((child, alive) for child in children[message_id])
  survivors = [c for c in cleaned if c is not None and c.id in kept]
  stats.messages_out += len(survivors)
  return survivors


@dataclasses.dataclass(frozen=True)
class Example:
  id: str
  context: tuple[str, ...]  # Oldest first, at most MAX_CONTEXT_TURNS.
  response: str
  context_speakers: tuple[str, ...] = ()
  response_speaker: str = ""


def make_examples(survivors: Sequence[Message], stats: FilterStatistics,
                  max_context_turns: int = MAX_CONTEXT_TURNS) -> list[Example]:
  """One example per surviving reply: context = its nearest ancestors, oldest first."""
  by_id = {m.id: m for m in survivors}
  examples, roots_with_examples = [], set()
  for m in survivors:
    ancestors, parent = [], by_id.get(m.parent_id)
    while parent is not None and len(ancestors) < max_context_turns:
      ancestors.append(parent)
      parent = by_id.get(parent.parent_id)
    if not ancestors:
      continue
    root = ancestors[-1]
    while root.parent_id in by_id:
      root = by_id[root.parent_id]
    roots_with_examples.add(root.id)
    ancestors.reverse()
    examples.append(Example(m.id, tuple(a.text for a in ancestors), m.text,
                            tuple(a.speaker for a in ancestors), m.speaker))
  stats.examples_out += len(examples)
  stats.conversations_out += len(roots_with_examples)
  return examples
