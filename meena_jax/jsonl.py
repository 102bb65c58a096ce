"""JSON Lines in, each bad line named ``file:line``.

The one reader behind preference pairs, safety seeds, suites and answers, and metrics files:
blank lines are skipped, a ``.gz`` file is read through gzip, and invalid UTF-8 or JSON raises
the caller's error type naming the line, so each caller checks only its own fields.
"""
import gzip
import json
from typing import Any, Iterator

from meena_jax import storage


def read(path, error: type = ValueError) -> Iterator[tuple[str, Any]]:
  """Yields ``("path:line", record)`` for every non-blank line of ``path``."""
  path = storage.path(path)  # Local or gs://.
  with path.open("rb") as raw_file:
    f = gzip.GzipFile(fileobj=raw_file) if path.suffix == ".gz" else raw_file
    for number, raw in enumerate(f, start=1):
      where = f"{path}:{number}"
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as bad:
        raise error(f"{where}: invalid UTF-8 (byte 0x{raw[bad.start]:02x} at column "
                    f"{bad.start + 1})") from None
      if not text.strip():
        continue
      try:
        record = json.loads(text)
      except json.JSONDecodeError as bad:
        raise error(f"{where}: not JSON ({bad.msg})") from None
      yield where, record
