"""Items to rate, read from JSONL or from Meena's released transcript format.

An item is one response of one system to a context. Two formats:

JSONL, one object a line (what the chat's batch mode writes, plus the system's name)::

  {"context": ["Hi!", "Hello, how are you?"], "response": "Good, you?", "system": "meena"}
  {"context": ["I love tennis."], "responses": {"meena": "Me too!", "human": "Who's your fav?"}}

``context`` holds 1-7 turns, most recent last. ``system`` may come from ``--system`` instead;
``id`` (optional) names the context so that two identical lines stay two items. Other keys are
ignored.

Transcripts, as in google-research/meena (human.txt, meena.txt, mitsuku.txt, xiaoice.txt)::

  Meena Conversation 1
  Human: Hi!
  Meena: Hi! How are you today?

  Meena Conversation 2
  ...

Each block has two speakers. The bot is the speaker named like the block (``Meena``); where no
speaker is (``Human Conversation 3`` between ``Human 1`` and ``Human 2``), it is the one who
answers the opening turn. Every bot turn, with all the turns before it as context, becomes an
item of the system named by the block (or by ``--system``).

Any malformed line stops the import with ``MalformedItemError`` naming the file and line;
nothing is skipped silently (blank JSONL lines hold nothing and are passed over).
"""
import dataclasses
import hashlib
import json
import pathlib
import re
from typing import Iterator, Optional, Sequence

MAX_STATIC_CONTEXT_TURNS = 7


class MalformedItemError(ValueError):
  """An input line that is not a valid item; the message starts with ``file:line:``."""


@dataclasses.dataclass(frozen=True)
class Item:
  """One response to rate. ``cluster`` groups items that are not independent (the turns of
  one conversation) for the bootstrap; ``source`` says where it came from (``file:line``);
  ``task`` is ``ssa`` (sensible? specific?) or ``safety`` (the safety suite's review)."""
  key: str
  system: str
  context: tuple[str, ...]
  response: str
  cluster: str
  source: str
  kind: str = "static"
  task: str = "ssa"


def item_key(system: str, context: Sequence[str], response: str, group: Optional[str]) -> str:
  """Content hash: importing the same file twice adds nothing; ``group`` keeps two identical
  exchanges from different conversations apart."""
  payload = json.dumps([system, list(context), response, group], ensure_ascii=False)
  return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
  """(line number, text without its newline); invalid UTF-8 is reported with its line."""
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      try:
        yield number, raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as e:
        raise MalformedItemError(f"{path}:{number}: not UTF-8 ({e.reason} at byte "
                                 f"{e.start})") from None


def _text(value, what: str) -> str:
  if not isinstance(value, str) or not value.strip():
    raise ValueError(f"{what} must be a non-empty string, got {json.dumps(value)[:60]}")
  return value


def read_jsonl(path, system: Optional[str] = None) -> list[Item]:
  """Items of one JSONL file; ``system`` names lines that carry no ``system``."""
  path = pathlib.Path(path)
  items = []
  for number, line in _lines(path):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise MalformedItemError(f"{path}:{number}: invalid JSON: {e.msg} (column {e.colno})") \
          from None
    try:
      items.extend(_jsonl_items(record, system, f"{path}:{number}"))
    except ValueError as e:
      raise MalformedItemError(f"{path}:{number}: {e}") from None
  return items


def _jsonl_items(record, system: Optional[str], source: str) -> list[Item]:
  if not isinstance(record, dict):
    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
  context = record.get("context")
  if not isinstance(context, list) or not 1 <= len(context) <= MAX_STATIC_CONTEXT_TURNS:
    raise ValueError(f'"context" must be a list of 1-{MAX_STATIC_CONTEXT_TURNS} turns, got '
                     f"{json.dumps(context)[:60]}")
  context = tuple(_text(turn, f"context turn {i + 1}") for i, turn in enumerate(context))
  if ("response" in record) == ("responses" in record):
    raise ValueError('give exactly one of "response" (with "system" or --system) and '
                     '"responses" ({system: response})')
  if "responses" in record:
    responses = record["responses"]
    if not isinstance(responses, dict) or not responses:
      raise ValueError('"responses" must be a non-empty object {system: response}')
  else:
    name = record.get("system", system)
    if name is None:
      raise ValueError('no "system" in the line and no --system given')
    responses = {_text(name, '"system"'): record["response"]}
  group = record.get("id")
  if group is not None and not isinstance(group, (str, int)):
    raise ValueError('"id" must be a string or an integer')
  items = []
  for name, response in responses.items():
    name = _text(name, "a system name")
    response = _text(response, f"the response of {name!r}")
    key = item_key(name, context, response, None if group is None else str(group))
    items.append(Item(key=key, system=name, context=context, response=response, cluster=key,
                      source=source))
  return items


_HEADER = re.compile(r"^(?P<name>[^:]+?) Conversation (?P<number>\d+)$")
_TURN = re.compile(r"^(?P<speaker>[^:]{1,40}):(?P<text>.*)$")


@dataclasses.dataclass
class _Block:
  name: str
  header: str
  line: int
  speakers: list[str] = dataclasses.field(default_factory=list)
  texts: list[str] = dataclasses.field(default_factory=list)
  lines: list[int] = dataclasses.field(default_factory=list)


def read_transcripts(path, system: Optional[str] = None) -> list[Item]:
  """Items of one transcript file: every bot turn with the turns before it."""
  path = pathlib.Path(path)
  items, headers, block = [], set(), None
  for number, line in _lines(path):
    line = line.strip()
    header = _HEADER.match(line)
    if not line or header:
      if block is not None:
        items.extend(_block_items(path, block, system))
        block = None
      if header:
        if line in headers:
          raise MalformedItemError(f"{path}:{number}: {line!r} appears twice in this file")
        headers.add(line)
        block = _Block(name=header["name"], header=line, line=number)
      continue
    turn = _TURN.match(line)
    if block is None:
      raise MalformedItemError(f"{path}:{number}: expected a header '<Name> Conversation <N>' "
                               f"before the first turn, got {line[:60]!r}")
    if turn is None or not turn["text"].strip():
      raise MalformedItemError(f"{path}:{number}: expected '<Speaker>: <text>', got "
                               f"{line[:60]!r}")
    speaker = turn["speaker"].strip()
    if speaker not in block.speakers and len(set(block.speakers)) == 2:
      raise MalformedItemError(f"{path}:{number}: a third speaker {speaker!r} in "
                               f"{block.header!r}; a conversation has two")
    block.speakers.append(speaker)
    block.texts.append(turn["text"].strip())
    block.lines.append(number)
  if block is not None:
    items.extend(_block_items(path, block, system))
  return items


def _block_items(path: pathlib.Path, block: _Block, system: Optional[str]) -> list[Item]:
  where = f"{path}:{block.line}"
  if len(set(block.speakers)) != 2:
    raise MalformedItemError(f"{where}: {block.header!r} needs turns by two speakers, has "
                             f"{sorted(set(block.speakers))}")
  bot = block.name if block.name in block.speakers else block.speakers[1]
  if block.speakers[0] == bot:
    raise MalformedItemError(f"{path}:{block.lines[0]}: the bot {bot!r} opens "
                             f"{block.header!r}, so its first turn has no context to rate")
  name = system or block.name
  cluster = f"{path.name}:{block.header}"
  return [Item(key=item_key(name, block.texts[:i], block.texts[i], block.header), system=name,
               context=tuple(block.texts[:i]), response=block.texts[i], cluster=cluster,
               source=f"{path}:{block.lines[i]}")
          for i, speaker in enumerate(block.speakers) if speaker == bot]


def read_items(path, system: Optional[str] = None, fmt: str = "auto") -> list[Item]:
  """Dispatch on ``fmt`` (``jsonl``, ``transcript``) or, for ``auto``, on the file suffix:
  ``.jsonl``/``.json`` are JSONL, anything else a transcript."""
  path = pathlib.Path(path)
  if fmt == "auto":
    fmt = "jsonl" if path.suffix in (".jsonl", ".json") else "transcript"
  if fmt == "jsonl":
    return read_jsonl(path, system)
  if fmt == "transcript":
    return read_transcripts(path, system)
  raise ValueError(f"unknown format {fmt!r}: expected auto, jsonl or transcript")
