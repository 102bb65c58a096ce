"""The safety runner with a stand-in responder (byte vocabulary, canned replies, no model):
what each record carries, truncation, the input filter, benign prompts, resuming after a crash,
and input errors naming the line."""
import dataclasses
import json

import pytest
import seqio

from meena_jax import chat, decoding
from meena_jax.safety import runner


@dataclasses.dataclass
class FakeResponder:
  """The parts of ``chat.Responder`` the runner reads; answers echo the last turn's length."""
  config: decoding.DecodingConfig = dataclasses.field(
      default_factory=lambda: decoding.DecodingConfig(num_samples=2, max_length=8))
  vocabulary: seqio.Vocabulary = dataclasses.field(default_factory=seqio.ByteVocabulary)
  context_length: int = 22
  context_turns: int = 7
  batch_size: int = 2
  asked: list = dataclasses.field(default_factory=list)

  def respond(self, contexts, mode="sample"):
    self.asked += [c[-1] for c in contexts]
    return [chat.Reply(f"reply to {len(c[-1])} chars", mode, 0.1, []) for c in contexts]


ROWS = [{"id": f"p{i}", "category": "self_harm", "style": "slang", "technique": "logical_appeal",
         "testcase": text, "intent": "placeholder"} for i, text in
        enumerate(["short one", "a much longer placeholder prompt", "blocked word here"])]


def test_records_carry_settings_truncation_and_the_filter(tmp_path):
  (tmp_path / "block.txt").write_text("blocked\n")
  (tmp_path / "benign.jsonl").write_text('{"context": ["hi", "how are you"]}\n\n'
                                         '{"context": ["nice day"]}\n')
  responder = FakeResponder()
  rows = ROWS + runner.read_benign(tmp_path / "benign.jsonl", limit=5)
  counts = runner.run(responder, rows, tmp_path / "a.jsonl", mode="beam", system="fake",
                      checkpoint="runs/x", checkpoint_step=7, seed=3,
                      input_filter=runner.InputFilter(blocklist=str(tmp_path / "block.txt")),
                      progress=False)
  assert counts == {"answered": 5, "skipped": 0, "truncated": 1, "filtered": 1}
  records = runner.read_records(tmp_path / "a.jsonl")
  assert [r["id"] for r in records] == ["p0", "p1", "p2", "benign-1", "benign-3"]
  first = records[0]
  assert first["response"] == "reply to 9 chars" and first["prompt_tokens"] == 9
  assert (first["mode"], first["checkpoint_step"], first["seed"], first["system"]) == (
      "beam", 7, 3, "fake")
  assert first["decoding"]["num_samples"] == 2 and first["context_length"] == 22
  assert [r["truncated"] for r in records] == [False, True, False, False, False]
  assert records[2]["filtered"] == "blocklist term 'blocked'"
  assert records[2]["response"] == runner.FILTER_REPLY
  assert "blocked word here" not in responder.asked  # The model never saw it.
  assert records[3]["benign"] and records[3]["context"] == ["hi", "how are you"]
  assert records[3]["prompt_tokens"] == len("hi <turn> how are you")


def test_a_rerun_skips_answered_ids_and_redoes_a_half_written_line(tmp_path):
  output = tmp_path / "a.jsonl"
  runner.run(FakeResponder(), ROWS[:2], output, progress=False)
  data = output.read_bytes()
  output.write_bytes(data[:-15])  # A crash in the middle of the second record.
  responder = FakeResponder()
  counts = runner.run(responder, ROWS, output, progress=False)
  assert counts["answered"] == 2 and counts["skipped"] == 1
  assert responder.asked == [ROWS[1]["testcase"], ROWS[2]["testcase"]]
  assert [r["id"] for r in runner.read_records(output)] == ["p0", "p1", "p2"]


def test_bad_input_names_the_file_and_line(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"id": "p0"}\n[1, 2]\n')
  with pytest.raises(runner.RunError, match=r"a\.jsonl:2: not an answer record"):
    runner.answered_ids(tmp_path / "a.jsonl")
  (tmp_path / "b.jsonl").write_text('{"context": ["hi"]}\n{"context": []}\n')
  with pytest.raises(runner.RunError, match=r"b\.jsonl:2: empty context"):
    runner.read_benign(tmp_path / "b.jsonl", 10)
  (tmp_path / "c.jsonl").write_text('{"id": 1}\nnot json\n')
  with pytest.raises(runner.RunError, match=r"c\.jsonl:2: not JSON"):
    runner.read_records(tmp_path / "c.jsonl")
  assert json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0]) == {"id": "p0"}
