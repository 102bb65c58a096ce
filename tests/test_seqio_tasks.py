"""The chitchat TFDS builder, its vocabulary and its SeqIO task, prepared once for this module
(~30 s on 2 cores; pinned to one xdist worker by the group mark)."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import seqio
import sentencepiece as spm
import tensorflow as tf

from meena_tasks import builders, seqio_tasks, vocab

pytestmark = pytest.mark.xdist_group("chitchat")


@pytest.fixture(scope="module")
def data_dir(chitchat_dir):
  return chitchat_dir


@pytest.fixture(scope="module")
def task(data_dir):
  return seqio_tasks.get_task("chitchat", data_dir)


@pytest.fixture(scope="module")
def builder(task, data_dir):
  return seqio_tasks.SOURCES["chitchat"](data_dir=data_dir)


def test_builder_writes_three_splits_and_statistics(builder):
  stats = builders.statistics(builder)
  assert set(stats) == set(builder.info.splits) == {"train", "validation", "test"}
  for split, s in stats.items():
    assert s["examples_out"] == builder.info.splits[split].num_examples > 0
    removed = sum(s["removed"].values()) + s["removed_with_parent"]
    assert s["messages_in"] == s["messages_out"] + removed
    assert s["malformed_skipped"] == 0
  assert stats["train"]["removed"]["subword_count"] > 0


def test_vocabulary_has_seqio_ids_and_the_turn_separator(builder):
  sp = spm.SentencePieceProcessor(model_file=str(builder.vocab_file))
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2)
  assert sp.get_piece_size() == 4000
  assert sp.encode(f"hi {vocab.TURN_SEPARATOR} there").count(
      sp.piece_to_id(vocab.TURN_SEPARATOR)) == 1


def test_vocabulary_round_trips_validation_text_except_whitespace_runs(builder):
  sp = spm.SentencePieceProcessor(model_file=str(builder.vocab_file))
  texts = list(builders.cleaned_texts(builders.chitchat_groups()["validation"]))
  assert len(texts) > 5000
  for text, ids in zip(texts, sp.encode(texts)):
    assert sp.decode(ids) == re.sub(r"\s+", " ", text).strip()


def test_normalisation_drops_only_invisible_characters_and_the_tokenizer_is_quiet(builder):
  sp = spm.SentencePieceProcessor(model_file=str(builder.vocab_file))
  assert sp.decode(sp.encode("he\ufeffllo wo\u200brld")) == "hello world"
  for kept in ("Ｈｉ", "ﬁne", "Café", "x²"):  # NFKC would rewrite each of these.
    assert sp.decode(sp.encode(kept)) == kept
  # tensorflow-text's SentencePiece (what SeqIO runs) logs from C++ on a model without a
  # compiled normaliser; a child process's stderr shows whether it does.
  code = ("import tensorflow_text as t; t.SentencepieceTokenizer(model=open("
          f"{str(builder.vocab_file)!r}, 'rb').read()).tokenize(['hi']); print('built')")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
  assert "built" in result.stdout and "normalizer.cc" not in result.stderr


def test_vocabulary_training_is_deterministic(tmp_path):
  texts = list(builders.cleaned_texts(builders.chitchat_groups()["test"]))[:3000]
  first = vocab.train(texts, tmp_path / "a.model", vocab_size=600)
  second = vocab.train(list(reversed(texts)), tmp_path / "b.model", vocab_size=600)
  assert first.read_bytes() == second.read_bytes()


def test_context_is_joined_by_the_separator_and_cut_from_the_left(task):
  vocabulary = task.output_features["inputs"].vocabulary
  turns = ["first turn is long " * 10, "second turn", "third and latest turn"]
  ds = tf.data.Dataset.from_tensors({"context": turns, "response": "a reply", "id": "x"})
  ds = seqio_tasks.join_turns(ds)
  ds = seqio.preprocessors.tokenize(ds, task.output_features)
  full = next(iter(ds))["inputs"].numpy()
  cut = next(iter(seqio_tasks.keep_most_recent_inputs(ds, {"inputs": 12})))["inputs"].numpy()
  separator = vocabulary.tokenizer.piece_to_id(vocab.TURN_SEPARATOR)
  assert list(full).count(separator) == 2
  assert len(cut) == 12 and list(cut) == list(full[-12:])
  assert vocabulary.decode(cut.tolist()).endswith("third and latest turn")
  uncut = next(iter(seqio_tasks.keep_most_recent_inputs(ds, None)))["inputs"].numpy()
  assert list(uncut) == list(full)


def test_task_yields_trimmed_examples_with_eos(task):
  lengths = {"inputs": 32, "targets": 16}
  for ex in task.get_dataset(lengths, split="validation", shuffle=False).take(50):
    assert 0 < len(ex["inputs"]) <= 32 and 0 < len(ex["targets"]) <= 16
    assert ex["targets"][-1] == 1 and 1 not in ex["inputs"].numpy()


def test_packed_training_batches_have_consistent_segments(task):
  lengths = {"inputs": 512, "targets": 128}
  ds = task.get_dataset(lengths, split="train", shuffle=True, seed=3)
  batch = next(iter(seqio.EncDecFeatureConverter(pack=True)(ds, lengths).batch(4)))
  batch = {k: v.numpy() for k, v in batch.items()}
  assert batch["encoder_input_tokens"].shape == (4, 512)
  assert batch["decoder_target_tokens"].shape == (4, 128)
  for prefix, tokens in (("encoder", "encoder_input_tokens"),
                         ("decoder", "decoder_target_tokens")):
    segments, positions = batch[f"{prefix}_segment_ids"], batch[f"{prefix}_positions"]
    assert np.all((segments > 0) == (batch[tokens] > 0))
    for row_segments, row_positions in zip(segments, positions):
      real = row_segments[row_segments > 0]
      assert np.all(np.diff(real) >= 0)  # Segments are contiguous and numbered in order.
      starts = np.r_[True, np.diff(row_segments) != 0] & (row_segments > 0)
      assert np.all(row_positions[starts] == 0)
  assert np.all(batch["decoder_input_tokens"][batch["decoder_positions"] == 0] == 0)
  np.testing.assert_array_equal(batch["decoder_loss_weights"],
                                batch["decoder_target_tokens"] > 0)
  assert batch["encoder_segment_ids"].max() > 1  # Several examples were packed in a row.


def test_eval_batches_are_padded_not_packed(task):
  lengths = {"inputs": 64, "targets": 32}
  ds = task.get_dataset(lengths, split="validation", shuffle=False)
  batch = next(iter(seqio.EncDecFeatureConverter(pack=False)(ds, lengths).batch(4)))
  assert set(batch) == {"encoder_input_tokens", "decoder_input_tokens",
                        "decoder_target_tokens", "decoder_loss_weights"}
  assert batch["encoder_input_tokens"].shape == (4, 64)


def test_unknown_task_is_refused_by_name(tmp_path):
  with pytest.raises(ValueError, match="unknown task 'chitchatt'"):
    seqio_tasks.get_task("chitchatt", str(tmp_path))


def test_pushshift_task_reads_fixture_dumps_with_a_shared_vocabulary(tmp_path, builder):
  from tests.test_sources import PUSHSHIFT_COMMENTS, write_zst
  comments = write_zst(tmp_path / "RC_2015-01.zst", PUSHSHIFT_COMMENTS)
  config = builders.PushshiftConfig(name="fixture", comment_files=(str(comments),))
  task = seqio_tasks.get_task("pushshift_reddit", str(tmp_path / "tfds"), config=config,
                              vocab_file=str(builder.vocab_file))
  pushshift = seqio_tasks.SOURCES["pushshift_reddit"](data_dir=str(tmp_path / "tfds"),
                                                       config=config)
  stats = builders.statistics(pushshift)
  assert sum(s["examples_out"] for s in stats.values()) == 2  # b <- a, c <- b (a is a root).
  assert sum(s["removed"]["url"] for s in stats.values()) == 1
  examples = [ex for split in pushshift.info.splits
              for ex in task.get_dataset(None, split=split, shuffle=False)]
  assert sorted(ex["targets_pretokenized"].numpy().decode() for ex in examples) == [
      "Oh I have heard good things about that one",
      "Probably the new one about the history of maps"]


def test_shuffling_is_deterministic_for_a_seed(task):
  lengths = {"inputs": 32, "targets": 16}
  first = lambda seed: [ex["id"].numpy() for ex in task.get_dataset(
      lengths, split="validation", shuffle=True, seed=seed).take(20)]
  assert first(7) == first(7)
  assert first(7) != first(8)


def test_vocab_command_trains_a_source_vocabulary(tmp_path):
  vocab.main(["--source=chitchat", "--vocab_size=500", f"--output={tmp_path / 'cc'}"])
  sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "cc.model"))
  assert sp.get_piece_size() == 500 and sp.eos_id() == 1


def test_reddit_mixture_reads_both_sources_with_one_vocabulary(tmp_path, builder):
  from tests.test_sources import PUSHSHIFT_COMMENTS, write_jsonl, write_zst
  turns = ["Which team do you think wins the cup this year?",
           "Honestly I think the underdogs have a real shot",
           "Their defence has been great all season long"]
  local_copy = tmp_path / "reddit2015"  # What REDDIT2015_DIR names instead of the download.
  local_copy.mkdir()
  for split in ("train", "validation"):
    write_jsonl(local_copy / f"{split}.jsonl.gz", [
        json.dumps({"id": f"{split}/{i}", "turns": turns}) for i in range(3)], compress=True)
  comments = write_zst(tmp_path / "RC_2015-01.zst", PUSHSHIFT_COMMENTS)
  mixture = seqio_tasks.get_reddit_mixture(
      builders.PushshiftConfig(name="mixture_fixture", comment_files=(str(comments),)),
      str(tmp_path / "tfds"), vocab_file=str(builder.vocab_file), source_dir=str(local_copy))
  assert sorted(t.name for t in mixture.tasks) == ["pushshift_reddit", "reddit2015"]
  vocabularies = {t.output_features["targets"].vocabulary.sentencepiece_model_file
                  for t in mixture.tasks}
  assert vocabularies == {str(builder.vocab_file)}
  assert mixture.get_rate(seqio.TaskRegistry.get("reddit2015")) == 6  # 3 x 2 replies.


def test_a_home_relative_data_dir_is_expanded(chitchat_dir, monkeypatch, tmp_path):
  home, link = tmp_path / "home", "meena_data"
  home.mkdir()
  (home / link).symlink_to(chitchat_dir)
  monkeypatch.setenv("HOME", str(home))
  monkeypatch.chdir(tmp_path)
  task = seqio_tasks.get_task("chitchat", f"~/{link}")
  assert next(iter(task.get_dataset(None, split="validation", shuffle=False).take(1)))
  assert not (tmp_path / "~").exists()
