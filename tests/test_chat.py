"""The chat command: interactive loop, stdio server, batch files, prompts, bad input, and the
gin + checkpoint path (a matching checkpoint answers; a mismatched one is named)."""
import dataclasses
import io
import json

import gin
import jax
import pytest
import seqio

from meena_jax import chat, commands, decoding
from meena_tasks import seqio_tasks
from meena_jax.model import Seq2Seq
from meena_tasks import vocab
from tests.conftest import TINY, init_params

SENTENCES = ["hello there how are you", "i am fine thanks and you", "what do you like to eat",
             "i like pizza and pasta", "the weather is nice today", "do you like music"] * 5
VOCAB_SIZE = 300
CFG = dataclasses.replace(TINY, vocab_size=VOCAB_SIZE, dropout_rate=0.0)
DECODING = decoding.DecodingConfig(num_samples=3, max_length=6, beam_size=2,
                                   repetition_ngram=2)


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  return str(vocab.train(SENTENCES, tmp_path_factory.mktemp("vocab") / "chat.model",
                         vocab_size=VOCAB_SIZE))


@pytest.fixture(scope="module")
def responder(vocab_file):
  return chat.Responder(Seq2Seq(CFG), init_params(CFG), seqio.SentencePieceVocabulary(vocab_file),
                        DECODING, context_length=16, context_turns=3, batch_size=2)


def test_contexts_keep_their_most_recent_tokens_and_report_the_cut(responder):
  turns = ["hello there", "i like pizza and pasta " * 4]
  (ids, full), = seqio_tasks.tokenize_contexts([turns], responder.vocabulary, 16)
  joined = responder.vocabulary.encode(" <turn> ".join(turns))
  assert full == len(joined) > 16 and list(ids) == joined[-16:]
  reply, = responder.respond([turns])
  assert reply.notices == [f"context cut to its most recent 16 tokens (it had {full})"]


def test_replies_are_text_for_every_context_in_both_modes(responder):
  contexts = [["hello there"], ["do you like music", "i like pizza"], ["the weather"]]
  for mode in chat.MODES:
    replies = responder.respond(contexts, mode)  # Three contexts: two batches of two.
    assert [r.mode for r in replies] == [mode] * 3
    assert all(isinstance(r.text, str) and r.seconds > 0 for r in replies)


def test_interactive_loop_handles_commands_empty_lines_bad_bytes_and_ctrl_d(responder):
  stdin = io.BytesIO(b"hello there\n\n/beam\nwhat do you like\nbad \xff byte\n/reset\n"
                     b"/sample\ndo you like music\n")
  out = io.StringIO()
  chat.interactive(responder, stdin, out)
  text = out.getvalue()
  assert text.count("meena> ") == 3
  assert "(empty message: type something, or /quit)" in text
  assert "line 5: invalid UTF-8 (byte 0xff at column 5); please type it again" in text
  assert "(answering with beam search)" in text and "s, beam]" in text
  assert "(conversation reset)" in text
  assert text.rsplit("meena> ", 1)[1].split("\n")[0].endswith("s, sample]")
  assert text.endswith("you> \n")  # Ctrl-D (end of input) leaves cleanly.
  out = io.StringIO()
  chat.interactive(responder, io.BytesIO(b"/quit\nhello\n"), out)
  assert "meena> " not in out.getvalue()


def test_stdio_answers_every_line_with_one_flushed_json_line(responder):
  stdin = io.BytesIO(b'{"context": ["hello there", "i am fine"]}\n'
                     b'{"context": ["caf\xe9"]}\n'
                     b'not json\n'
                     b'{"context": "a string"}\n'
                     b'{"context": ["do you like music"]}\n')
  out = io.StringIO()
  chat.serve_stdio(responder, stdin, out)
  records = [json.loads(line) for line in out.getvalue().splitlines()]
  assert len(records) == 5
  assert isinstance(records[0]["response"], str) and isinstance(records[4]["response"], str)
  assert records[1] == {"error": "line 2: invalid UTF-8 (byte 0xe9 at column 18)"}
  assert records[2]["error"].startswith("line 3: not JSON")
  assert records[3]["error"] == 'line 4: expected {"context": ["turn 1", "turn 2", ...]}'


def test_batch_file_answers_each_context_and_names_a_bad_line(responder, tmp_path):
  good = tmp_path / "contexts.jsonl"
  good.write_text("\n".join(json.dumps({"context": c}) for c in
                            [["hello there"], ["i like pizza"], ["the weather is nice"]]) + "\n")
  output = tmp_path / "responses.jsonl"
  assert chat.answer_file(responder, str(good), str(output), "beam", progress=False) == 3
  records = [json.loads(line) for line in output.read_text().splitlines()]
  assert [r["context"] for r in records] == [["hello there"], ["i like pizza"],
                                             ["the weather is nice"]]
  assert all(r["mode"] == "beam" and isinstance(r["response"], str) for r in records)
  bad = tmp_path / "bad.jsonl"
  bad.write_bytes(b'{"context": ["hi"]}\n{"context": ["\xc3("]}\n')
  with pytest.raises(chat.BadLine, match=r"bad\.jsonl:2: invalid UTF-8 \(byte 0xc3"):
    chat.answer_file(responder, str(bad), str(tmp_path / "x.jsonl"), progress=False)


def test_an_existing_output_survives_an_empty_input_and_a_failure_half_way(responder, tmp_path,
                                                                         monkeypatch):
  output = tmp_path / "responses.jsonl"
  output.write_text("earlier answers\n")
  empty = tmp_path / "empty.jsonl"
  empty.write_text("\n")
  with pytest.raises(chat.BadLine, match=r"empty\.jsonl: no contexts to answer"):
    chat.answer_file(responder, str(empty), str(output), progress=False)
  contexts = tmp_path / "contexts.jsonl"
  contexts.write_text("\n".join(json.dumps({"context": [f"hi {i}"]}) for i in range(12)))
  calls = []

  def fail_on_the_second_batch(batch, mode):
    calls.append(len(batch))
    if len(calls) == 2:
      raise RuntimeError("device lost")
    return [chat.Reply("ok", mode, 0.0, []) for _ in batch]
  monkeypatch.setattr(responder, "respond", fail_on_the_second_batch)
  with pytest.raises(RuntimeError, match="device lost"):
    chat.answer_file(responder, str(contexts), str(output), progress=False)
  assert output.read_text() == "earlier answers\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["contexts.jsonl", "empty.jsonl",
                                                        "responses.jsonl"]


def test_prompts_show_sample_and_rank_next_to_beam(responder):
  out = io.StringIO()
  chat.compare_prompts(responder, ["hello there", "do you like music"], out)
  lines = out.getvalue().splitlines()
  assert lines[0] == "> hello there" and lines[3] == "> do you like music"
  assert lines[1].startswith("  sample-and-rank: ") and lines[2].startswith("  beam search:")


def save_checkpoint(model_dir, params):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(model_dir / "checkpoints" / "7" / "state", {"params": params})
  checkpointer.wait_until_finished()


def test_main_loads_the_gin_model_and_names_a_mismatched_parameter(vocab_file, tmp_path,
                                                                   capsys):
  params = jax.device_get(init_params(CFG))
  save_checkpoint(tmp_path / "run", params)
  gin_file = tmp_path / "chat.gin"
  gin_file.write_text("\n".join([
      f"ModelConfig.{f.name} = {getattr(CFG, f.name)!r}" for f in dataclasses.fields(CFG)] + [
      "CHECKPOINT = %gin.REQUIRED", "DecodingConfig.num_samples = 3", "DecodingConfig.max_length = 6",
      "DecodingConfig.beam_size = 2",
      "load_responder.model_config = @ModelConfig()",
      f"load_responder.vocab_file = '{vocab_file}'",
      "load_responder.checkpoint = %CHECKPOINT",
      "load_responder.decoding_config = @DecodingConfig()",
      "load_responder.batch_size = 2", "load_responder.context_length = 16"]))
  try:
    gin.clear_config()
    commands.chat([f"--gin_file={gin_file}", f"--gin.CHECKPOINT={tmp_path / 'run'}",
               "--prompt", "hello there"])
    assert capsys.readouterr().out.startswith("> hello there\n  sample-and-rank: ")
    gin.clear_config()
    with pytest.raises(SystemExit, match=r"does not match the gin model: .*d_model|"
                       r"does not match the gin model: .*params\["):
      commands.chat([f"--gin_file={gin_file}", f"--gin.CHECKPOINT={tmp_path / 'run'}",
                 "--gin.ModelConfig.d_model=64", "--prompt", "hello"])
    gin.clear_config()
    with pytest.raises(SystemExit, match="the CHECKPOINT macro"):
      commands.chat([f"--gin_file={gin_file}", "--prompt", "hello"])
  finally:
    gin.clear_config()
