"""Rebuild the ``reddit2015`` conversations from the raw files of ``leahrnh/reddit_corpus``.

The shared copy (``train.jsonl.gz``/``validation.jsonl.gz``, described by its README) was made
from the 260 daily files we have of that repository; this module redoes that conversion so the
TFDS builder can start from the raw files, which are the data's actual provenance, and so the
method is code rather than prose. It follows the README step by step:

1. Read each ``<subreddit>_<YYYY-MM-DD>.json`` file: a JSON array of (question, answer) records.
   The collector's JSON writer had bugs (a leading ``[,``, missing commas between records, a
   missing closing ``]``); those are tolerated, anything else is a ``MalformedInputError``.
2. Thread records into trees: the collector numbered comment walks so that a record whose
   ``qSentId`` is one more than an earlier record's ``aSentId`` (same text) replies to that
   answer. Turn text is normalised; empty, ``[deleted]`` and ``[removed]`` turns end a chain.
3. Merge a tree into an earlier day's tree of the same subreddit with the same root text and a
   shared reply (hot submissions were collected on several days).
4. Cut each tree into conversations by a path decomposition (each reply follows its parent
   exactly once), drop exact repeats and number them ``<subreddit>/<date>/<n>``.
5. Split by submission-like units joined by shared trees and long shared texts, hashed by name.

On the 260 files this reproduces the shared files byte for byte (``write_jsonl``). Only the
standard library is used, so the conversion runs anywhere the raw files are. As a command,
``python -m meena_tasks.reddit_corpus RAW_DIR OUT_DIR`` writes both files from a directory of
raw files.
"""
import argparse
import bisect
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
from typing import Iterator, Mapping, Optional, Union

from meena_jax import storage
from meena_tasks.sources import MalformedInputError

FILE_NAME = re.compile(r"(?P<subreddit>[A-Za-z]+)_(?P<date>\d{4}-\d{2}-\d{2})\.json")
FIELDS = ("qSentId", "question", "aSentId", "answer")
DROPPED_TEXTS = ("", "[deleted]", "[removed]")
VALIDATION_BELOW, TRAIN_FROM = 0.02, 0.04  # Hash points in between are held out of both files.
SHARED_TEXT_CHARS = 50  # Units sharing a text at least this long go to the same split.
TITLE_MAX_CHARS = 300
TITLE_REPLIES = 3  # The collector stored at most three replies per message.
_LINE_BREAK_RUN = re.compile(r"\s*[\r\n]\s*")
_MARKUP = re.compile(r"&gt;|\*\*")  # Quotes and bold: comments, not titles.


def normalize(text: str) -> str:
  """Strip, and replace each whitespace run that holds a line break by one space."""
  return _LINE_BREAK_RUN.sub(" ", text.strip())


def parse_file_name(name: str) -> tuple[str, str]:
  """(subreddit, date) of ``books_2015-02-02.json``; ValueError for any other name."""
  match = FILE_NAME.fullmatch(os.path.basename(name))
  if not match:
    raise ValueError(f"{name!r} is not a reddit_corpus daily file name "
                     f"(<subreddit>_<YYYY-MM-DD>.json)")
  return match["subreddit"], match["date"]


# ---------------------------------------------------------------------------------- reading
def _json_objects(name: str, text: str) -> Iterator[dict]:
  """The objects of the collector's JSON array, tolerating its separator bugs."""
  decoder = json.JSONDecoder()
  position = len(text) - len(text.lstrip())
  if not text.startswith("[", position):
    raise MalformedInputError(f"{name}: not a JSON array")
  position += 1
  index = 0
  while True:
    while position < len(text) and text[position] in " \t\r\n,":
      position += 1
    if position == len(text) or text[position] == "]":
      break  # A missing "]" means the collector stopped after a complete record.
    try:
      record, position = decoder.raw_decode(text, position)
    except json.JSONDecodeError as e:
      raise MalformedInputError(f"{name}: record {index}: malformed JSON ({e.msg} at "
                                f"character {e.pos})") from None
    yield record
    index += 1
  if text[position + 1:].strip():
    raise MalformedInputError(f"{name}: text after the closing ']' at character {position}")


def read_records(name: str, path) -> list[dict]:
  """The records of one raw file (local, or a download under a gs:// DATA_DIR), each checked
  for the fields threading needs."""
  data = storage.path(path).read_bytes()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise MalformedInputError(f"{name}: not UTF-8 ({e.reason} at byte {e.start})") from None
  records = []
  for index, record in enumerate(_json_objects(name, text)):
    if not isinstance(record, dict):
      raise MalformedInputError(f"{name}: record {index}: not a JSON object")
    for field in FIELDS:
      if field not in record:
        raise MalformedInputError(f"{name}: record {index}: missing field {field!r}")
    if not (isinstance(record["qSentId"], int) and isinstance(record["aSentId"], int)
            and isinstance(record["question"], str) and isinstance(record["answer"], str)):
      raise MalformedInputError(f"{name}: record {index}: ids must be integers and texts "
                                f"strings")
    records.append(record)
  return records


# -------------------------------------------------------------------------------- threading
class Node:
  """A message: its normalised text and its replies in the order they were collected."""
  __slots__ = ("text", "replies")

  def __init__(self, text: str):
    self.text = text
    self.replies: list["Node"] = []

  def reply(self, text: str) -> "Node":
    """The reply with this text, added if there is none yet."""
    for child in self.replies:
      if child.text == text:
        return child
    child = Node(text)
    self.replies.append(child)
    return child


class Tree:
  """A root as one file holds it: its day, the source id and raw text of its first message,
  and how many replies the file stored for it (before any merging)."""
  __slots__ = ("root", "subreddit", "date", "root_id", "raw_text", "stored_replies", "unit")

  def __init__(self, root: Node, subreddit: str, date: str, root_id: int, raw_text: str):
    self.root, self.subreddit, self.date = root, subreddit, date
    self.root_id, self.raw_text, self.stored_replies = root_id, raw_text, 0
    self.unit = -1  # Index of its split unit, set by `split_units`.


def thread(records: list[dict], subreddit: str, date: str) -> list[Tree]:
  """The trees of one file, in the order their roots first appear."""
  trees: list[Tree] = []
  answers: dict[int, Node] = {}  # aSentId -> the answer's node (dropped answers are absent).
  questions: dict[int, Optional[Node]] = {}  # qSentId -> its node (None: a dropped text).
  for record in records:
    q_id, question = record["qSentId"], normalize(record["question"])
    if q_id not in questions:
      parent = answers.get(q_id - 1)
      if parent is None or parent.text != question:  # Links to nothing: a new root.
        parent = None if question in DROPPED_TEXTS else Node(question)
        if parent is not None:
          trees.append(Tree(parent, subreddit, date, q_id, record["question"]))
      questions[q_id] = parent
    parent = questions[q_id]
    answer = normalize(record["answer"])
    if answer in DROPPED_TEXTS:
      continue
    if parent is None:  # The question was dropped: its reply starts a new tree.
      node = Node(answer)
      trees.append(Tree(node, subreddit, date, record["aSentId"], record["answer"]))
    else:
      node = parent.reply(answer)  # Replies with the same text under one parent are one node.
    answers[record["aSentId"]] = node
  for tree in trees:
    tree.stored_replies = len(tree.root.replies)
  return trees


def _merge(into: Node, other: Node) -> None:
  """Add ``other``'s replies to ``into``, identifying replies by their text."""
  for child in other.replies:
    _merge(into.reply(child.text), child)


def merge_repeats(trees: list[Tree]) -> tuple[list[Tree], list[tuple[Tree, Tree]]]:
  """The trees left after merging each into the first earlier tree of its subreddit with the
  same root text and a reply in common, and the (merged, kept) pairs."""
  kept: list[Tree] = []
  by_root: dict[tuple[str, str], list[Tree]] = {}
  merges: list[tuple[Tree, Tree]] = []
  for tree in trees:
    replies = {child.text for child in tree.root.replies}
    for earlier in by_root.get((tree.subreddit, tree.root.text), ()):
      if replies & {child.text for child in earlier.root.replies}:
        _merge(earlier.root, tree.root)
        merges.append((tree, earlier))
        break
    else:
      kept.append(tree)
      by_root.setdefault((tree.subreddit, tree.root.text), []).append(tree)
  return kept, merges


# ------------------------------------------------------------------------ conversations
def conversations_of(root: Node) -> list[list[str]]:
  """Path decomposition, in preorder of the replies: a first reply continues the conversation
  that ends with its parent; each further reply starts one that opens with the parent."""
  result: list[list[str]] = []
  stack = [(child, root, None) for child in reversed(root.replies)]
  while stack:
    node, parent, continued = stack.pop()  # `continued`: the parent's conversation, if any.
    if continued is not None:
      continued.append(node.text)
      conversation = continued
    else:
      conversation = [parent.text, node.text]
      result.append(conversation)
    for index in range(len(node.replies) - 1, -1, -1):
      stack.append((node.replies[index], node, conversation if index == 0 else None))
  return result


def numbered(kept: list[Tree]) -> Iterator[tuple[Tree, dict]]:
  """(tree, conversation) in order, repeats of an earlier conversation dropped, numbered
  from 0 within each subreddit and day."""
  seen: set[tuple[str, ...]] = set()
  counts: dict[tuple[str, str], int] = {}
  for tree in kept:
    for turns in conversations_of(tree.root):
      key = tuple(turns)
      if key in seen:
        continue
      seen.add(key)
      n = counts.get((tree.subreddit, tree.date), 0)
      counts[(tree.subreddit, tree.date)] = n + 1
      yield tree, {"id": f"{tree.subreddit}/{tree.date}/{n}", "subreddit": tree.subreddit,
                   "date": tree.date, "turns": turns}


# ----------------------------------------------------------------------------------- splits
def looks_like_title(tree: Tree) -> bool:
  """One stripped line of at most 300 characters, no quote or bold markup, three replies."""
  raw = tree.raw_text
  return (raw == raw.strip() and "\n" not in raw and "\r" not in raw
          and len(raw) <= TITLE_MAX_CHARS and not _MARKUP.search(raw)
          and tree.stored_replies == TITLE_REPLIES)


def _nesting_test(records: list[dict]):
  """A test of whether an id lies strictly inside some record's (qSentId, aSentId) span: the
  root of a comment whose parent was not stored, not a submission."""
  spans = sorted((record["qSentId"], record["aSentId"]) for record in records)
  starts = [q for q, _ in spans]
  reach, furthest = [], None  # reach[i]: the largest aSentId among spans[:i + 1].
  for _, a in spans:
    furthest = a if furthest is None else max(furthest, a)
    reach.append(furthest)
  return lambda i: (k := bisect.bisect_left(starts, i)) > 0 and reach[k - 1] > i


def split_units(trees: list[Tree], records: list[dict], first_unit: int) -> list[Tree]:
  """Set each tree's ``unit`` (numbered from ``first_unit``); return each unit's first tree.
  A unit starts at a title-like root not nested in a record's span."""
  nested = _nesting_test(records)
  firsts: list[Tree] = []
  for tree in trees:
    if not firsts or (looks_like_title(tree) and not nested(tree.root_id)):
      firsts.append(tree)
    tree.unit = first_unit + len(firsts) - 1
  return firsts


class _Groups:
  """Union-find over unit numbers."""

  def __init__(self):
    self.parent: dict[int, int] = {}

  def find(self, unit: int) -> int:
    root = unit
    while self.parent.get(root, root) != root:
      root = self.parent[root]
    while unit != root:
      self.parent[unit], unit = root, self.parent.get(unit, unit)
    return root

  def join(self, a: int, b: int) -> None:
    a, b = self.find(a), self.find(b)
    if a != b:
      self.parent[max(a, b)] = min(a, b)


def long_texts(root: Node) -> Iterator[str]:
  """Texts of a tree long enough that sharing one keeps two units in one split."""
  stack = [root]
  while stack:
    node = stack.pop()
    if len(node.text) >= SHARED_TEXT_CHARS:
      yield node.text
    stack.extend(node.replies)


def hash_point(name: str) -> float:
  """The first 8 bytes of the SHA-256 of ``name`` as a fraction of 2^64."""
  return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") / 2 ** 64


def split_of_point(point: float) -> Optional[str]:
  """``validation`` below 0.02, ``train`` from 0.04, None (held out of both) in between."""
  return "validation" if point < VALIDATION_BELOW else "train" if point >= TRAIN_FROM else None


def unit_splits(firsts: list[Tree], groups: _Groups) -> dict[int, Optional[str]]:
  """The split of each unit: that of its group's smallest ``subreddit<TAB>first message``."""
  names: dict[int, str] = {}
  for tree in firsts:
    group, name = groups.find(tree.unit), f"{tree.subreddit}\t{tree.root.text}"
    if group not in names or name < names[group]:
      names[group] = name
  points = {group: split_of_point(hash_point(name)) for group, name in names.items()}
  return {tree.unit: points[groups.find(tree.unit)] for tree in firsts}


# ---------------------------------------------------------------------------------- rebuild
def _sources(files: Mapping[str, Union[str, os.PathLike]]) -> list[tuple[str, str, str, object]]:
  """(subreddit, date, name, path) in processing order: by day, then subreddit ignoring case."""
  sources = []
  for name, path in files.items():
    subreddit, date = parse_file_name(name)
    sources.append((date, subreddit.casefold(), subreddit, name, path))
  return [(subreddit, date, name, path) for date, _, subreddit, name, path in sorted(sources)]


def rebuild(files: Mapping[str, Union[str, os.PathLike]]) -> dict[str, list[dict]]:
  """{"train": [...], "validation": [...]} of conversations {"id", "subreddit", "date", "turns"}
  in the shared files' order, from raw daily files keyed by their original file name
  ("books_2015-02-02.json"; the value is the path to read, which may have another name)."""
  trees: list[Tree] = []
  firsts: list[Tree] = []
  groups = _Groups()
  owner_of_text: dict[str, int] = {}  # A long text -> the first unit that holds it.
  for subreddit, date, name, path in _sources(files):
    records = read_records(name, path)
    file_trees = thread(records, subreddit, date)
    firsts += split_units(file_trees, records, len(firsts))
    for tree in file_trees:  # Before merging, while each tree holds only this file's texts.
      for text in long_texts(tree.root):
        groups.join(owner_of_text.setdefault(text, tree.unit), tree.unit)
    trees += file_trees
  kept, merges = merge_repeats(trees)
  for merged, into in merges:
    groups.join(merged.unit, into.unit)
  splits = unit_splits(firsts, groups)
  result: dict[str, list[dict]] = {"train": [], "validation": []}
  for tree, conversation in numbered(kept):
    split = splits[tree.unit]
    if split is not None:
      result[split].append(conversation)
  return result


def write_jsonl(conversations: list[dict], path) -> None:
  """Gzip JSON Lines byte for byte as the shared files: compact UTF-8 JSON through a text
  wrapper (its buffering shapes the deflate stream), no name or time in the gzip header."""
  with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                              compresslevel=9, mtime=0) as compressed:
    text = io.TextIOWrapper(compressed, encoding="utf-8", newline="\n")
    for conversation in conversations:
      text.write(json.dumps(conversation, ensure_ascii=False, separators=(",", ":")) + "\n")
    text.flush()
    text.detach()  # Leave closing the gzip stream to its `with`.


def main(argv=None) -> None:
  """Rebuild ``train.jsonl.gz`` and ``validation.jsonl.gz`` from a directory of raw files."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("raw_dir", type=pathlib.Path, help="holds the <subreddit>_<date>.json files")
  parser.add_argument("out_dir", type=pathlib.Path)
  args = parser.parse_args(argv)
  files = {path.name: path for path in sorted(args.raw_dir.glob("*_*.json"))}
  args.out_dir.mkdir(parents=True, exist_ok=True)
  for split, conversations in rebuild(files).items():
    write_jsonl(conversations, args.out_dir / f"{split}.jsonl.gz")
    print(f"{split}: {len(conversations)} conversations")


if __name__ == "__main__":
  main()
