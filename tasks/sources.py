"""Readers for the raw conversation sources, each yielding ``conversations.Message`` lists.

- ``chitchat``: the ``chitchat_dataset`` PyPI package (7,168 conversations, offline).
- ``conversations_jsonl``: gzip/plain JSONL, one ``{"id", "turns", ...}`` conversation a line.
- ``pushshift``: Reddit ``RC_YYYY-MM.zst`` comment dumps (and optional ``RS_*`` submissions),
  streamed record by record; ``trees`` is the thread rule that groups their messages
  (``beam_pipeline`` applies it per submission).

Bad input stops the read with a ``MalformedInputError`` naming the file and line (or byte
offset); with ``skip_malformed`` each bad record is counted in the statistics instead. Nothing
is dropped silently.
"""
import gzip
import hashlib
import json
import pathlib
from typing import Iterator, Optional, Sequence

from meena_tasks.conversations import FilterStatistics, Message, chain

SPLIT_FRACTIONS = (("train", 0.90), ("validation", 0.05), ("test", 0.05))


class DataError(ValueError):
  """Data a run cannot use, said in one line that names the file or setting to fix; the
  command lines print that line instead of a traceback."""


class MalformedInputError(DataError):
  """A record that cannot be read; the message names the file and line or byte offset."""


def hash_split(key: str, fractions=SPLIT_FRACTIONS) -> str:
  """Deterministic split by the SHA-256 of ``key``, independent of file order."""
  point = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2 ** 64
  for split, fraction in fractions:
    if point < fraction:
      return split
    point -= fraction
  return fractions[-1][0]


# --------------------------------------------------------------------------------- chitchat
def chitchat_conversations() -> Iterator[tuple[str, list[str], list[str]]]:
  """(conversation id, turns, speakers "A"/"B"): consecutive messages of a sender form a turn."""
  import chitchat_dataset  # The package loads its 20 MB JSON on construction.
  for conversation_id, conversation in chitchat_dataset.Dataset().items():
    turns, speakers, labels = [], [], {}
    for group in conversation["messages"]:
      for utterance in group:
        sender = utterance["sender"]
        label = labels.setdefault(sender, chr(ord("A") + len(labels)))
        if speakers and speakers[-1] == label:
          turns[-1] = f"{turns[-1]} {utterance['text']}"
        else:
          turns.append(utterance["text"])
          speakers.append(label)
    yield conversation_id, turns, speakers


# ------------------------------------------------------------------------------------ JSONL
def _open_lines(path: pathlib.Path):
  """Binary line iterator over a plain or gzip file (gzip detected by its magic bytes)."""
  with open(path, "rb") as f:
    gzipped = f.read(2) == b"\x1f\x8b"
  return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _bad(path, where: str, why: str, skip_malformed: bool, stats: FilterStatistics):
  if not skip_malformed:
    raise MalformedInputError(f"{path}:{where}: {why} (pass skip_malformed=True to count and "
                              f"skip such records)")
  stats.malformed_skipped += 1


def read_jsonl(path, skip_malformed: bool,
               stats: FilterStatistics) -> Iterator[list[Message]]:
  """Conversations of one JSONL file as message chains."""
  path = pathlib.Path(path)
  line_number = 0
  with _open_lines(path) as lines:
    try:
      for line_number, raw in enumerate(lines, 1):
        if not raw.strip():
          continue
        try:
          record = json.loads(raw.decode("utf-8"))
          conversation_id, turns = record["id"], record["turns"]
          if not isinstance(conversation_id, str) or not isinstance(turns, list) or not all(
              isinstance(t, str) for t in turns):
            raise ValueError("'id' must be a string and 'turns' a list of strings")
        except UnicodeDecodeError as e:
          _bad(path, f"{line_number}", f"not UTF-8 ({e.reason} at byte {e.start})",
               skip_malformed, stats)
          continue
        except json.JSONDecodeError as e:
          _bad(path, f"{line_number}", f"malformed JSON ({e.msg}, column {e.colno})",
               skip_malformed, stats)
          continue
        except KeyError as e:
          _bad(path, f"{line_number}", f"missing field {e}", skip_malformed, stats)
          continue
        except (ValueError, TypeError) as e:
          _bad(path, f"{line_number}", str(e), skip_malformed, stats)
          continue
        yield chain(conversation_id, turns)
    except (EOFError, OSError) as e:  # Truncated or corrupt gzip stream.
      _bad(path, f"{line_number + 1}", f"truncated or corrupt compressed stream ({e})",
           skip_malformed, stats)


# -------------------------------------------------------------------------------- Pushshift
def _zst_lines(path: pathlib.Path) -> Iterator[tuple[int, bytes]]:
  """(byte offset in the decompressed stream, line) of a Pushshift ``.zst`` file.

  Raises ``zstandard.ZstdError`` when the file ends inside a frame (a truncated download),
  which a plain stream reader would take for a clean end.
  """
  import zstandard
  # Pushshift compresses with a 2 GiB window; the default decoder refuses that.
  decompressor = zstandard.ZstdDecompressor(max_window_size=2 ** 31)
  frame, pending, offset = None, b"", 0  # `frame` is None between frames.
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      while chunk:
        frame = frame or decompressor.decompressobj()
        pending += frame.decompress(chunk)
        chunk, frame = (frame.unused_data, None) if frame.eof else (b"", frame)
      *lines, pending = pending.split(b"\n")
      for line in lines:
        yield offset, line
        offset += len(line) + 1
  if frame is not None:  # The partial last line belongs to the truncation, not to the data.
    raise zstandard.ZstdError(f"stream ends inside a frame after {offset} decompressed bytes")
  if pending:
    yield offset, pending


def pushshift_records(path, skip_malformed: bool, stats: FilterStatistics,
                      submissions: bool = False) -> Iterator[tuple[int, Message, str]]:
  """``(byte offset, message, link)`` of every record of one Pushshift dump, streamed (memory
  holds a chunk of the file): comments are ``t1_<id>`` replying to ``parent_id`` in the thread
  of submission ``link_id``; submissions are ``t3_<id>``, their title the text, a root and
  their own link."""
  import zstandard
  path = pathlib.Path(path)
  fields = ("id", "title", "author") if submissions else ("id", "parent_id", "link_id",
                                                          "author", "body")
  offset = 0
  try:
    for offset, raw in _zst_lines(path):
      if not raw.strip():
        continue
      where = f"byte {offset}"
      try:
        record = json.loads(raw.decode("utf-8"))
        values = {k: record[k] for k in fields}
      except UnicodeDecodeError as e:
        _bad(path, where, f"not UTF-8 ({e.reason})", skip_malformed, stats)
        continue
      except json.JSONDecodeError as e:
        _bad(path, where, f"malformed JSON ({e.msg})", skip_malformed, stats)
        continue
      except (KeyError, TypeError) as e:
        _bad(path, where, f"missing field {e}", skip_malformed, stats)
        continue
      if submissions:
        link = f"t3_{values['id']}"
        yield offset, Message(link, None, values["title"], values["author"]), link
      else:
        yield offset, Message(f"t1_{values['id']}", values["parent_id"], values["body"],
                              values["author"]), values["link_id"]
  except zstandard.ZstdError as e:
    _bad(path, f"byte {offset}", f"truncated or corrupt zstandard stream ({e})",
         skip_malformed, stats)


def trees(messages) -> dict[str, list[Message]]:
  """The thread rule: ``messages`` (in dump order; a later record of an id replaces an earlier
  one) grouped into trees, each keyed by its root's parent (the submission ``t3_...`` when
  the root is a top-level comment or the submission itself, the missing parent's id when a
  reply's parent is not in the dump). Every message shares its tree with its ancestors, so a
  tree never spans two submissions: a pipeline may apply this per submission."""
  by_id = {}
  for m in messages:
    by_id[m.id] = m
  grouped: dict[str, list[Message]] = {}
  root_of: dict[str, str] = {}  # Memo: message id -> its tree's key.
  for m in by_id.values():
    path, top = [], m
    while top.parent_id in by_id and top.id not in root_of and len(path) < 100_000:
      path.append(top.id)
      top = by_id[top.parent_id]
    key = root_of.get(top.id, top.parent_id or top.id)
    root_of.update({i: key for i in path + [top.id]})
    grouped.setdefault(key, []).append(m)
  return grouped
