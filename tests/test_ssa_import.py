"""SSA import: JSONL and Meena's transcript format to items; bad lines named by file and line."""
import pathlib

import pytest

from meena_jax.ssa import __main__ as cli
from meena_jax.ssa import importers, store

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "ssa"


def test_transcripts_every_bot_turn_with_the_turns_before_it():
  items = importers.read_transcripts(FIXTURES / "transcripts.txt")
  got = [(i.system, i.context, i.response, i.source.rsplit(":", 1)[1]) for i in items]
  assert got == [
      ("Meena", ("Hi!",), "Hey! How's your day going?", "3"),
      ("Meena", ("Hi!", "Hey! How's your day going?", "Pretty good, I went hiking this morning."),
       "Nice! Where did you go hiking?", "5"),
      ("Meena", ("Hi!",), "Hi! What are you up to?", "9"),
      ("Meena", ("Hi!", "Hi! What are you up to?", "Watching a <b>movie</b> & eating popcorn"),
       "Which movie? I love popcorn: it's the best.", "11"),
      # No speaker is named "Human": the bot is the one answering the opening turn.
      ("Human", ("Hi!",), "Hello, any plans for the weekend?", "15"),
      ("Human", ("Hi!", "Hello, any plans for the weekend?", "Visiting my sister in Oakland."),
       "That sounds lovely. Do you see her often?", "17"),
  ]
  # Turns of one conversation share a bootstrap cluster; identical first exchanges of two
  # conversations stay two items.
  assert len({i.cluster for i in items}) == 3
  assert items[0].cluster == items[1].cluster != items[2].cluster
  assert len({i.key for i in items}) == 6
  assert {i.system for i in importers.read_transcripts(FIXTURES / "transcripts.txt",
                                                       system="meena_v2")} == {"meena_v2"}


def test_jsonl_one_item_per_system():
  items = importers.read_jsonl(FIXTURES / "items.jsonl")
  got = [(i.system, i.context, i.response, i.source.rsplit(":", 1)[1]) for i in items]
  assert got == [
      ("meena", ("I love tennis.",), "Me too, I can't get enough of Roger Federer!", "1"),
      ("cleverbot", ("I love tennis.",), "That's nice.", "1"),
      ("meena", ("Hi!", "Hello, how are you?", "Good, just back from Paris."),
       "How was the Eiffel Tower?", "2"),
      ("cleverbot", ("What is your favourite food?",), "I don't know.", "4"),  # line 3 is blank
  ]


@pytest.mark.parametrize("line, why", [
    ('{"context": ["Hi"], "response": "Hey", "system": "a"', "invalid JSON"),
    ('["Hi", "Hey"]', "expected a JSON object"),
    ('{"context": [], "response": "Hey", "system": "a"}', "list of 1-7 turns"),
    ('{"context": ["1", "2", "3", "4", "5", "6", "7", "8"], "response": "x", "system": "a"}',
     "list of 1-7 turns"),
    ('{"context": ["Hi", "  "], "response": "Hey", "system": "a"}', "context turn 2"),
    ('{"context": ["Hi"], "response": "Hey"}', 'no "system"'),
    ('{"context": ["Hi"], "response": "", "system": "a"}', "the response of 'a'"),
    ('{"context": ["Hi"], "system": "a"}', 'exactly one of "response"'),
    ('{"context": ["Hi"], "responses": {}}', '"responses" must be a non-empty object'),
    ('{"context": ["Hi"], "responses": {"a": 3}}', "the response of 'a'"),
    ('{"context": ["Hi"], "responses": {" ": "Hey"}}', "a system name"),
])
def test_malformed_jsonl_line_named_by_file_and_line(tmp_path, line, why):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"context": ["Hi"], "response": "Hey", "system": "a"}\n\n' + line + "\n")
  with pytest.raises(importers.MalformedItemError) as e:
    importers.read_jsonl(path)
  assert str(e.value).startswith(f"{path}:3: ")
  assert why in str(e.value)


def test_non_utf8_named_by_line(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_bytes(b'{"context": ["Hi"], "response": "Hey", "system": "a"}\n{"context": ["\xff"]}')
  with pytest.raises(importers.MalformedItemError, match=rf"^{path}:2: not UTF-8"):
    importers.read_jsonl(path)


@pytest.mark.parametrize("text, line, why", [
    ("Human: Hi!\n", 1, "expected a header"),
    ("Meena Conversation 1\nHuman: Hi!\nthis line has no speaker\n", 3,
     "expected '<Speaker>: <text>'"),
    ("Meena Conversation 1\nHuman: Hi!\nMeena:   \n", 3, "expected '<Speaker>: <text>'"),
    ("Meena Conversation 1\nHuman: Hi!\nMeena: Hey\nBob: Hello\n", 4, "a third speaker 'Bob'"),
    ("Meena Conversation 1\nHuman: Hi!\nMeena: Hey\n\nMeena Conversation 1\nHuman: Hi!\n", 5,
     "appears twice"),
    ("Meena Conversation 1\nHuman: Hi!\nHuman: Anyone?\n", 1, "needs turns by two speakers"),
    ("Meena Conversation 1\nMeena: Hi!\nHuman: Hey\n", 2, "opens 'Meena Conversation 1'"),
])
def test_malformed_transcript_named_by_file_and_line(tmp_path, text, line, why):
  path = tmp_path / "bad.txt"
  path.write_text(text)
  with pytest.raises(importers.MalformedItemError) as e:
    importers.read_items(path)
  assert str(e.value).startswith(f"{path}:{line}: ")
  assert why in str(e.value)


def test_cli_import_is_all_or_nothing_and_idempotent(tmp_path, capsys):
  db = str(tmp_path / "r.sqlite")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"context": ["Hi"], "response": "Hey", "system": "a"}\nnot json\n')
  files = [str(FIXTURES / "transcripts.txt"), str(FIXTURES / "items.jsonl")]
  assert cli.main(["import", "--db", db, *files, str(bad)]) == 2
  assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
  assert store.label_rows(store.connect(db)) == []  # the valid files were not half-imported
  assert cli.main(["import", "--db", db, *files]) == 0
  assert "10 added, 0 already" in capsys.readouterr().out
  assert cli.main(["import", "--db", db, *files]) == 0
  assert "0 added, 10 already" in capsys.readouterr().out
  systems = sorted({row["system"] for row in store.label_rows(store.connect(db))})
  assert systems == ["Human", "Meena", "cleverbot", "meena"]
