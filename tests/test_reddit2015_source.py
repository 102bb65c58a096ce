"""Where reddit2015 comes from: the pinned raw files through TFDS's download manager (served
here from 127.0.0.1), a local copy through REDDIT2015_DIR, and one-line errors when neither
works; plus the prepare command. Subword counts use chitchat's vocabulary (prepared once)."""
import functools
import gzip
import hashlib
import http.server
import json
import pathlib
import re
import threading

import pytest

from meena_tasks import builders, prepare, seqio_tasks
from tests.test_sources import PUSHSHIFT_COMMENTS, write_zst

pytestmark = pytest.mark.xdist_group("chitchat")

TITLE = "What is the best book you have read this year?"
ANSWER = "Probably the new one about the history of maps"
REPLY = "Oh I have heard good things about that one"
RAW = [  # The collector's records: a reply's qSentId is its parent answer's aSentId.
    {"docID": "t5_2qh4i", "qSentId": 1, "question": TITLE, "aSentId": 2, "answer": ANSWER,
     "corpus": "reddit"},
    {"docID": "t5_2qh4i", "qSentId": 2, "question": ANSWER, "aSentId": 3, "answer": REPLY,
     "corpus": "reddit"},
]


@pytest.fixture(scope="module")
def vocab_file(chitchat_dir):
  return str(seqio_tasks.SOURCES["chitchat"](data_dir=chitchat_dir).vocab_file)


@pytest.fixture
def server(tmp_path):
  """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields its base URL."""
  root = tmp_path / "www"
  root.mkdir()
  handler = functools.partial(_QuietHandler, directory=str(root))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    del args


def pinned_builder(tmp_path, base_url: str, files: dict, served: dict):
  """A ``Reddit2015`` subclass whose checksum table pins ``files`` (name -> bytes) at
  ``base_url``; ``served`` (name -> bytes) is what the server really returns."""
  table = tmp_path / "checksums.tsv"
  table.write_text("".join(
      f"{base_url}/{name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\t{name}\n"
      for name, data in sorted(files.items())))
  for name, data in served.items():
    (tmp_path / "www" / name).write_bytes(data)

  class Reddit2015Fixture(builders.Reddit2015, skip_registration=True):
    _checksums_path = table
  return Reddit2015Fixture


def test_the_pinned_table_names_the_260_daily_files_at_one_commit():
  lines = builders.REDDIT2015_CHECKSUMS.read_text().splitlines()
  assert len(lines) == 260
  base = f"https://raw.githubusercontent.com/leahrnh/reddit_corpus/{builders.RAW_REDDIT2015[1]}/"
  subreddits = set()
  for line in lines:
    url, size, sha256, name = line.split("\t")
    assert url == base + "reddit_corpus/" + name and int(size) > 0
    assert re.fullmatch(r"[0-9a-f]{64}", sha256)
    subreddits.add(re.fullmatch(r"(\w+)_2015-\d\d-\d\d\.json", name).group(1))
  assert len(subreddits) == 14  # AskReddit keeps a few small days; 5 large ones are absent.


def test_the_default_source_downloads_the_pinned_files_and_rebuilds_them(tmp_path, server,
                                                                         vocab_file):
  _, url = server
  raw = {"books_2015-02-02.json": json.dumps(RAW).encode()}
  builder_class = pinned_builder(tmp_path, url, raw, served=raw)
  builder = builder_class(data_dir=str(tmp_path / "tfds"), vocab_file=vocab_file)
  builder.download_and_prepare()
  stats = builders.statistics(builder)
  assert sum(s["examples_out"] for s in stats.values()) == 2  # ANSWER <- TITLE, REPLY <- ANSWER.
  responses = sorted(ex["response"].decode() for split in builder.info.splits
                     for ex in builder.as_dataset(split=split).as_numpy_iterator())
  assert responses == [REPLY, ANSWER]


@pytest.mark.parametrize("served, cause", [
    ({"books_2015-02-02.json": b"[]"}, "wrong checksum"),
    ({}, "HTTP code: 404"),
])
def test_an_unreachable_or_changed_source_names_the_setting(tmp_path, server, vocab_file,
                                                            served, cause):
  _, url = server
  builder_class = pinned_builder(tmp_path, url, {"books_2015-02-02.json": json.dumps(RAW).encode()},
                                 served)
  builder = builder_class(data_dir=str(tmp_path / "tfds"), vocab_file=vocab_file)
  with pytest.raises(builders.SourceUnavailableError) as error:
    builder.download_and_prepare()
  message = str(error.value)
  assert "\n" not in message and cause in message
  assert "--gin.REDDIT2015_DIR=DIR" in message and "github.com/leahrnh/reddit_corpus" in message
  assert str(tmp_path / "tfds" / "downloads" / "manual") in message


def _local_copy(directory: pathlib.Path, splits=("train", "validation")) -> pathlib.Path:
  directory.mkdir()
  for split in splits:
    lines = [json.dumps({"id": f"books/2015-02-02/{i}", "subreddit": "books",
                         "date": "2015-02-02", "turns": [TITLE, ANSWER, REPLY]})
             for i in range(2)]
    (directory / f"{split}.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
  return directory


def test_the_task_reads_a_local_copy_through_the_setting(tmp_path, vocab_file):
  task = seqio_tasks.get_task("reddit2015", str(tmp_path / "tfds"), vocab_file=vocab_file,
                              source_dir=str(_local_copy(tmp_path / "copy")))
  examples = list(task.get_dataset(None, split="validation", shuffle=False))
  assert len(examples) == 4  # Two conversations, two replies each.


def test_a_local_copy_without_its_files_is_one_line(tmp_path, vocab_file):
  source = _local_copy(tmp_path / "copy", splits=("train",))
  with pytest.raises(builders.SourceUnavailableError,
                     match=rf"^REDDIT2015_DIR={source} lacks validation.jsonl.gz; pass"):
    seqio_tasks.get_task("reddit2015", str(tmp_path / "tfds"), vocab_file=vocab_file,
                         source_dir=str(source))


def test_prepare_builds_pushshift_dumps_and_prints_what_the_filters_kept(tmp_path, vocab_file,
                                                                          capsys):
  comments = write_zst(tmp_path / "RC_2015-01.zst", PUSHSHIFT_COMMENTS)
  data_dir = tmp_path / "tfds"
  prepare.main(["pushshift_reddit", f"--data_dir={data_dir}", "--comment_files", str(comments),
                f"--vocab_file={vocab_file}"])
  out = capsys.readouterr().out
  assert f"pushshift_reddit prepared in {data_dir}/pushshift_reddit/default/1.0.0" in out
  assert "removed most for url 1" in out
  # The trainer's get_task then finds the prepared dumps without being given them again (and
  # reddit2015's task file, included by the run files, binds source_dir=None for every task).
  task = seqio_tasks.get_task("pushshift_reddit", str(data_dir), vocab_file=vocab_file,
                              source_dir=None)
  assert sum(len(list(task.get_dataset(None, split=s, shuffle=False)))
             for s in task.splits) == 2


def test_unprepared_pushshift_without_dumps_says_how_to_prepare_it(tmp_path, vocab_file):
  with pytest.raises(builders.SourceUnavailableError,
                     match=r"python -m meena_jax prepare pushshift_reddit --data_dir"):
    seqio_tasks.get_task("pushshift_reddit", str(tmp_path / "tfds"), vocab_file=vocab_file)
