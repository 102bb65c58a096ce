"""Source readers: chitchat's split, JSONL and Pushshift bad input, Pushshift tree rebuilding."""
import gzip
import hashlib
import json

import pytest
import zstandard

from meena_tasks import builders, conversations, sources
from meena_tasks.conversations import FilterStatistics
from meena_tasks.sources import MalformedInputError


def test_chitchat_has_7168_conversations_each_in_exactly_one_split():
  groups = builders.chitchat_groups()
  ids = {split: {g[0].id.rsplit("/", 1)[0] for g in gs} for split, gs in groups.items()}
  assert sum(len(v) for v in ids.values()) == 7168
  assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"]
              or ids["validation"] & ids["test"])
  assert 0.85 < len(ids["train"]) / 7168 < 0.95
  # Speakers alternate: consecutive messages of one sender were merged into one turn.
  for group in groups["validation"]:
    assert all(a.speaker != b.speaker for a, b in zip(group, group[1:]))


def write_jsonl(path, lines, compress=False):
  data = b"".join(line if isinstance(line, bytes) else line.encode() + b"\n" for line in lines)
  path.write_bytes(gzip.compress(data) if compress else data)
  return path


GOOD = json.dumps({"id": "c1", "turns": ["Hi, how are you?", "Great, thanks!"]})


@pytest.mark.parametrize("bad_line, why", [
    ('{"id": "c2", "turns": ["unterminated', "malformed JSON"),
    ('{"id": "c2"}', "missing field 'turns'"),
    (b'{"id": "c2", "turns": ["caf\xe9"]}\n', "not UTF-8"),
    ('{"id": "c2", "turns": "not a list"}', "'turns' a list of strings"),
])
def test_bad_jsonl_line_names_file_and_line(tmp_path, bad_line, why):
  path = write_jsonl(tmp_path / "convs.jsonl", [GOOD, bad_line, GOOD])
  with pytest.raises(MalformedInputError, match=rf"convs.jsonl:2: .*{why}"):
    list(sources.read_jsonl(path, skip_malformed=False, stats=FilterStatistics()))
  stats = FilterStatistics()
  assert len(list(sources.read_jsonl(path, skip_malformed=True, stats=stats))) == 2
  assert stats.malformed_skipped == 1


def test_truncated_gzip_is_reported(tmp_path):
  path = tmp_path / "convs.jsonl.gz"
  data = gzip.compress(("\n".join([GOOD] * 200) + "\n").encode())
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(MalformedInputError, match="convs.jsonl.gz:.*truncated"):
    list(sources.read_jsonl(path, skip_malformed=False, stats=FilterStatistics()))


def test_gzip_and_plain_jsonl_read_the_same(tmp_path):
  plain = write_jsonl(tmp_path / "a.jsonl", [GOOD])
  packed = write_jsonl(tmp_path / "a.jsonl.gz", [GOOD], compress=True)
  read = lambda p: list(sources.read_jsonl(p, False, FilterStatistics()))
  assert read(plain) == read(packed)
  assert [m.text for m in read(plain)[0]] == ["Hi, how are you?", "Great, thanks!"]


def comment(cid, parent, body, author="someone"):
  return json.dumps({"id": cid, "parent_id": parent, "link_id": "t3_s1", "author": author,
                     "body": body, "subreddit": "test", "created_utc": 0})


def write_zst(path, lines):
  path.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
  return path


PUSHSHIFT_COMMENTS = [
    comment("a", "t3_s1", "What is the best book you have read this year?"),
    comment("b", "t1_a", "Probably the new one about the history of maps"),
    comment("c", "t1_b", "Oh I have heard good things about that one"),
    comment("d", "t1_a", "Check it out at https://example.org/book"),  # URL: d, e go.
    comment("e", "t1_d", "Thanks for the link, will do"),
    comment("f", "t1_a", "I keep rereading old fantasy novels", author="fantasy_bot"),
    comment("g", "t3_s2", "[deleted]"),
    comment("h", "t1_g", "Why was this removed, it was a fine question"),
]


def test_pushshift_fixture_yields_exactly_the_expected_conversations(tmp_path):
  comments = write_zst(tmp_path / "RC_2015-01.zst", PUSHSHIFT_COMMENTS)
  submissions = write_zst(tmp_path / "RS_2015-01.zst", [
      json.dumps({"id": "s1", "title": "Books thread", "author": "mod"})])
  stats = FilterStatistics()
  records = [m for path, is_submission in ((submissions, True), (comments, False))
             for _, m, _ in sources.pushshift_records(path, False, stats, is_submission)]
  trees = sources.trees(records)
  assert sorted(trees) == ["t3_s1", "t3_s2"]
  stats = FilterStatistics()
  examples = []
  for messages in trees.values():
    cleaned = conversations.clean_messages(messages)
    survivors = conversations.filter_messages(
        messages, cleaned, lambda texts: [len(t.split()) for t in texts],
        conversations.text_occurrences(cleaned), stats)
    examples += conversations.make_examples(survivors, stats)
  got = {e.id: (e.context, e.response) for e in examples}
  title, a, b = ("Books thread", "What is the best book you have read this year?",
                 "Probably the new one about the history of maps")
  assert got == {
      "t1_a": ((title,), a),
      "t1_b": ((title, a), b),
      "t1_c": ((title, a, b), "Oh I have heard good things about that one"),
  }
  assert stats.removed["url"] == 1 and stats.removed["bot_author"] == 1
  assert stats.removed["deleted"] == 1 and stats.removed_with_parent == 2  # e and h.


def test_truncated_zst_names_the_file_and_offset(tmp_path):
  path = tmp_path / "RC_2015-02.zst"
  unique = [comment(f"x{i}", "t3_s9", hashlib.sha256(str(i).encode()).hexdigest())
            for i in range(5000)]  # Several 128 KiB blocks: half the file decodes to lines.
  data = zstandard.ZstdCompressor().compress("\n".join(unique).encode())
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(MalformedInputError, match=r"RC_2015-02.zst:byte \d+: truncated"):
    list(sources.pushshift_records(path, skip_malformed=False, stats=FilterStatistics()))
  stats = FilterStatistics()
  read = list(sources.pushshift_records(path, skip_malformed=True, stats=stats))
  assert read and stats.malformed_skipped == 1


def test_hash_split_is_deterministic_and_roughly_90_5_5():
  splits = [sources.hash_split(f"conversation-{i}") for i in range(4000)]
  assert splits == [sources.hash_split(f"conversation-{i}") for i in range(4000)]
  assert 0.87 < splits.count("train") / 4000 < 0.93
  assert 0.03 < splits.count("validation") / 4000 < 0.07
