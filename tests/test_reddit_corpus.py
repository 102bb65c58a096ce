"""reddit_corpus: rebuilding reddit2015 conversations from tiny in-memory raw daily files."""
import gzip
import json

import pytest

from meena_tasks import reddit_corpus
from meena_tasks.sources import MalformedInputError


def record(q_id, question, a_id, answer):
  return {"docID": "t5_2qh4i", "qSentId": q_id, "question": question, "aSentId": a_id,
          "answer": answer, "corpus": "reddit"}


def write_raw(tmp_path, name, records=None, text=None):
  """A raw daily file (under a different name on disk, as a downloader may store it)."""
  path = tmp_path / f"raw-{len(list(tmp_path.iterdir()))}.json"
  path.write_text(text if text is not None else json.dumps(records), encoding="utf-8")
  return {name: path}


@pytest.fixture
def everything_in_train(monkeypatch):
  """Put every unit in train, so structural tests need not care where hashes fall."""
  monkeypatch.setattr(reddit_corpus, "VALIDATION_BELOW", 0.0)
  monkeypatch.setattr(reddit_corpus, "TRAIN_FROM", 0.0)


def turns(result, split="train"):
  return [c["turns"] for c in result[split]]


def test_a_question_one_past_an_answer_id_with_its_text_replies_to_it(tmp_path,
                                                                     everything_in_train):
  files = write_raw(tmp_path, "books_2015-02-02.json", [
      record(1, "Title", 2, "A"),
      record(3, "A", 4, "B"),  # 3 == 2 + 1 and the text matches: B replies to A.
      record(5, "B", 6, "C"),
      record(7, "Other", 8, "D"),  # 7 - 1 == 6, but the text differs: a new tree.
      record(9, "Title", 10, "E"),  # 9 - 1 is no answer: another root with the same text.
  ])
  result = reddit_corpus.rebuild(files)
  assert turns(result) == [["Title", "A", "B", "C"], ["Other", "D"], ["Title", "E"]]
  assert [c["id"] for c in result["train"]] == [
      "books/2015-02-02/0", "books/2015-02-02/1", "books/2015-02-02/2"]
  assert list(result["train"][0]) == ["id", "subreddit", "date", "turns"]
  assert result["validation"] == []


def test_collector_json_bugs_are_tolerated(tmp_path, everything_in_train):
  one, two = (json.dumps(r) for r in (record(1, "Title", 2, "A"), record(3, "A", 4, "B")))
  for text in (f"[,{one},{two}]", f"[{one}{two}]", f"[{one},{two}", f"[{one}, {two}]\n"):
    files = write_raw(tmp_path, "books_2015-02-02.json", text=text)
    assert turns(reddit_corpus.rebuild(files)) == [["Title", "A", "B"]], text


def test_branches_start_conversations_that_open_with_their_parent(tmp_path,
                                                                  everything_in_train):
  files = write_raw(tmp_path, "gaming_2015-03-01.json", [
      record(1, "T", 2, "A"),
      record(3, "A", 4, "A1"),
      record(3, "A", 6, "A2"),  # A's second reply: a branch.
      record(7, "A2", 8, "A2x"),
      record(1, "T", 10, "B"),  # The title's second reply.
      record(1, "T", 12, "A"),  # Same text under the same parent: the same node as A.
  ])
  assert turns(reddit_corpus.rebuild(files)) == [
      ["T", "A", "A1"], ["A", "A2", "A2x"], ["T", "B"]]


def test_deleted_and_empty_turns_end_the_chain(tmp_path, everything_in_train):
  files = write_raw(tmp_path, "News_2015-03-01.json", [
      record(1, "T", 2, "A"),
      record(3, "A", 4, "[removed]"),
      record(5, "[removed]", 6, "C"),  # Below a dropped turn: a new tree rooted at C.
      record(7, "C", 8, "D"),
      record(1, "T", 10, " \n "),
      record(11, " \n ", 12, "[deleted]"),
  ])
  assert turns(reddit_corpus.rebuild(files)) == [["T", "A"], ["C", "D"]]


def test_line_breaks_become_one_space_and_nothing_else_changes(tmp_path,
                                                               everything_in_train):
  files = write_raw(tmp_path, "books_2015-02-02.json", [
      record(1, "  Title  ", 2, "Line one\n\n  line two\r\rthree \r\n four"),
      record(3, "Line one\n\n  line two\r\rthree \r\n four", 4, "a  b &amp; **c**\t"),
  ])
  assert turns(reddit_corpus.rebuild(files)) == [
      ["Title", "Line one line two three four", "a  b &amp; **c**"]]


def test_a_later_day_merges_into_the_earlier_tree_and_repeats_are_dropped(
    tmp_path, everything_in_train):
  files = {
      **write_raw(tmp_path, "books_2015-02-02.json", [
          record(1, "Title", 2, "A"), record(3, "A", 4, "B")]),
      **write_raw(tmp_path, "books_2015-02-05.json", [
          record(1, "Title", 2, "A"), record(3, "A", 4, "B"), record(1, "Title", 6, "New")]),
  }
  result = reddit_corpus.rebuild(files)
  assert turns(result) == [["Title", "A", "B"], ["Title", "New"]]
  assert {c["date"] for c in result["train"]} == {"2015-02-02"}


def test_bad_input_names_the_file(tmp_path):
  files = write_raw(tmp_path, "books_2015-02-02.json", text='[{"qSentId": 1, "question": ')
  with pytest.raises(MalformedInputError, match=r"books_2015-02-02\.json"):
    reddit_corpus.rebuild(files)
  missing = {k: v for k, v in record(1, "T", 2, "A").items() if k != "answer"}
  files = write_raw(tmp_path, "books_2015-02-05.json", [record(1, "T", 2, "A"), missing])
  with pytest.raises(MalformedInputError,
                     match=r"books_2015-02-05\.json: record 1: missing field 'answer'"):
    reddit_corpus.rebuild(files)
  files = write_raw(tmp_path, "books-2015-02-05.json", [record(1, "T", 2, "A")])
  with pytest.raises(ValueError, match=r"books-2015-02-05\.json"):
    reddit_corpus.rebuild(files)


def submission(title, first_id):
  """A title with three replies, each answered once: a unit of its own."""
  records = []
  for k in range(3):
    reply = f"{title} reply {k}"
    a_id = first_id + 1 + 4 * k
    records += [record(first_id, title, a_id, reply), record(a_id + 1, reply, a_id + 2, "ok")]
  return records


def test_split_is_by_hashed_name_and_independent_of_file_order(tmp_path):
  # A title whose "subreddit<TAB>title" hashes below 0.02 goes to validation.
  title = next(f"Submission {i}" for i in range(10_000)
               if reddit_corpus.hash_point(f"movies\tSubmission {i}") < 0.02)
  other = next(f"Submission {i}" for i in range(10_000)
               if reddit_corpus.hash_point(f"movies\tSubmission {i}") >= 0.04)
  files = {
      **write_raw(tmp_path, "movies_2015-02-02.json", submission(other, 1)),
      **write_raw(tmp_path, "movies_2015-02-05.json", submission(title, 1) + submission(other, 50)),
      **write_raw(tmp_path, "books_2015-02-02.json", submission("A book", 100)),
  }
  result = reddit_corpus.rebuild(files)
  assert {c["turns"][0] for c in result["validation"]} == {title}
  assert title not in {c["turns"][0] for c in result["train"]}
  assert len(result["validation"]) == 3
  assert reddit_corpus.rebuild(dict(reversed(list(files.items())))) == result
  # Repeated collections of a submission stay in one split, on the day first collected.
  assert {c["date"] for c in result["train"] if c["turns"][0] == other} == {"2015-02-02"}


def test_write_jsonl_matches_the_shared_format(tmp_path):
  conversations = [{"id": "books/2015-02-02/0", "subreddit": "books", "date": "2015-02-02",
                    "turns": ["Café?", "Sí \u0003"]}]
  path = tmp_path / "train.jsonl.gz"
  reddit_corpus.write_jsonl(conversations, path)
  data = path.read_bytes()
  assert data[4:8] == b"\0\0\0\0"  # No timestamp: identical input, identical bytes.
  assert gzip.decompress(data).decode("utf-8") == (
      '{"id":"books/2015-02-02/0","subreddit":"books","date":"2015-02-02",'
      '"turns":["Café?","Sí \\u0003"]}\n')
