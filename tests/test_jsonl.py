"""``jsonl.read``: records with their ``file:line``, blank lines skipped, gzip read, and bad
bytes or bad JSON raised as the caller's error naming the line."""
import gzip

import pytest

from meena_jax import jsonl


class CallerError(ValueError):
  pass


def test_records_come_with_their_line_and_blank_lines_are_skipped(tmp_path):
  path = tmp_path / "a.jsonl"
  path.write_text('{"a": 1}\n\n  \n[2]\n', encoding="utf-8")
  assert list(jsonl.read(path)) == [(f"{path}:1", {"a": 1}), (f"{path}:4", [2])]


def test_gzip_files_are_read_through_gzip(tmp_path):
  path = tmp_path / "a.jsonl.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write('{"text": "caf\\u00e9"}\n{"text": "th\u00e9"}\n')
  assert [r["text"] for _, r in jsonl.read(path)] == ["caf\u00e9", "th\u00e9"]


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n{"a": \n', r"a\.jsonl:2: not JSON \(Expecting value\)"),
    (b'{"a": 1}\n{"a": "\xff"}\n', r"a\.jsonl:2: invalid UTF-8 \(byte 0xff at column 8\)"),
])
def test_a_bad_line_raises_the_callers_error_naming_it(tmp_path, content, message):
  path = tmp_path / "a.jsonl"
  path.write_bytes(content)
  records = jsonl.read(path, CallerError)
  assert next(records)[1] == {"a": 1}  # Lines before the bad one are still read.
  with pytest.raises(CallerError, match=message):
    next(records)
