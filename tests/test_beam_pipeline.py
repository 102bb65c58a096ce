"""The Pushshift pipeline on Apache Beam's DirectRunner (2 worker processes) against today's
in-memory builder: on a generated dump and on the fixture dump it yields exactly the examples,
filter statistics and vocabulary of the goldens that builder made (``tests/golden/
pushshift_golden.py``), and bad input, a restart and the TFDS builder behave."""
import glob
import gzip
import hashlib
import json
import pathlib

import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from meena_tasks import beam_pipeline, builders, sources, synthetic_pushshift
from meena_tasks.beam_pipeline import Settings
from tests.test_sources import PUSHSHIFT_COMMENTS, write_zst

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def examples(output_dir: str) -> dict:
  """``{split: sorted [id, context, response, context speakers, response speaker]}``."""
  found = {}
  for split in beam_pipeline.SPLITS:
    rows = [beam_pipeline.from_json(r.numpy()) for r in tf.data.TFRecordDataset(
        sorted(glob.glob(f"{output_dir}/{split}-*.tfrecord")))]
    if rows:
      found[split] = sorted([e.id, list(e.context), e.response, list(e.context_speakers),
                             e.response_speaker] for e in rows)
  return found


def test_a_generated_dump_gives_todays_examples_statistics_and_vocabulary(tmp_path):
  golden = json.loads(gzip.decompress((GOLDEN / "pushshift_generated_20k_seed1.json.gz")
                                      .read_bytes()))
  records = hashlib.sha256()
  for kind, record in synthetic_pushshift.generate(20_000, seed=1):
    records.update(kind.encode() + json.dumps(record, ensure_ascii=False,
                                              sort_keys=True).encode())
  assert records.hexdigest() == golden["records_sha256"], (
      "synthetic_pushshift no longer generates the dump the golden was made from")
  comments, submissions, _ = synthetic_pushshift.write_dumps(str(tmp_path / "dumps"), 20_000,
                                                             seed=1)
  vocab = tmp_path / "vocab_500.model"
  summary = beam_pipeline.run(
      Settings(comment_files=(comments,), submission_files=(submissions,),
               vocab_path=str(vocab), vocab_size=500), str(tmp_path / "out"),
      PipelineOptions(TWO_WORKERS))
  assert hashlib.sha256(vocab.read_bytes()).hexdigest() == golden["vocab_sha256"]
  assert summary["statistics"] == golden["statistics"]
  assert examples(str(tmp_path / "out")) == golden["examples"]
  assert summary["examples"] == {split: len(rows) for split, rows in golden["examples"].items()}


def fixture_dumps(tmp_path) -> tuple:
  comments = write_zst(tmp_path / "RC_2015-01.zst", PUSHSHIFT_COMMENTS)
  submissions = write_zst(tmp_path / "RS_2015-01.zst", [
      json.dumps({"id": "s1", "title": "Books thread", "author": "mod"})])
  return str(comments), str(submissions)


def test_the_fixture_dump_through_the_tfds_builder_gives_todays_dataset(tmp_path):
  golden = json.loads((GOLDEN / "pushshift_fixture.json").read_text())
  comments, submissions = fixture_dumps(tmp_path)
  config = builders.PushshiftConfig(name="fixture", comment_files=(comments,),
                                    submission_files=(submissions,))
  builder = builders.PushshiftReddit(
      data_dir=str(tmp_path / "tfds"), config=config,
      vocab_file=str(GOLDEN / "pushshift_generated_20k_seed1_500.model"))
  builder.download_and_prepare()
  assert builders.statistics(builder) == golden["statistics"]
  assert sorted(builder.info.splits) == ["train"]  # Empty splits are left out, as today.
  rows = sorted([ex["id"].decode(), [t.decode() for t in ex["context"]],
                 ex["response"].decode(), [t.decode() for t in ex["context_speakers"]],
                 ex["response_speaker"].decode()]
                for ex in builder.as_dataset(split="train").as_numpy_iterator())
  assert {"train": rows} == golden["examples"]
  assert not list((tmp_path / "tfds" / "downloads" / "pushshift_examples").iterdir())


def test_a_malformed_record_stops_the_pipeline_naming_its_file_and_offset_or_is_counted(
    tmp_path):
  comments = write_zst(tmp_path / "RC_2015-03.zst", PUSHSHIFT_COMMENTS[:3] + ['{"id": "zz", "bo']
                       + PUSHSHIFT_COMMENTS[3:])
  settings = Settings(comment_files=(str(comments),), train_vocab=False,
                      vocab_path=str(GOLDEN / "pushshift_generated_20k_seed1_500.model"))
  with pytest.raises(beam_pipeline.PipelineError, match=(
      r"^the Beam pipeline failed: .*RC_2015-03.zst:byte \d+: malformed JSON .* \(pass "
      r"skip_malformed=True to count and skip such records\)$")):
    beam_pipeline.run(settings, str(tmp_path / "stopped"))
  summary = beam_pipeline.run(Settings(**{**settings.__dict__, "skip_malformed": True}),
                              str(tmp_path / "skipped"))
  assert summary["statistics"]["train"]["malformed_skipped"] == 1
  assert summary["examples"]["train"] == 2  # The fixture's, without submissions: b and c.


def test_a_finished_pipeline_is_reused_and_a_cut_off_one_redone(tmp_path):
  comments, submissions = fixture_dumps(tmp_path)
  settings = Settings(comment_files=(comments,), submission_files=(submissions,),
                      train_vocab=False,
                      vocab_path=str(GOLDEN / "pushshift_generated_20k_seed1_500.model"))
  out = tmp_path / "out"
  first = beam_pipeline.run(settings, str(out))
  (out / "train-99999-of-99999.tfrecord").write_bytes(b"")  # Would fail any read.
  assert beam_pipeline.run(settings, str(out)) == first  # From done.json: nothing ran.
  (out / beam_pipeline.DONE).unlink()  # As if the run had been cut off before it finished.
  assert beam_pipeline.run(settings, str(out)) == first
  assert not (out / "train-99999-of-99999.tfrecord").exists()
  assert examples(str(out))["train"] == json.loads(
      (GOLDEN / "pushshift_fixture.json").read_text())["examples"]["train"]


def test_the_thread_rule_keys_a_tree_by_its_roots_parent_and_the_last_record_wins():
  m = sources.Message
  trees = sources.trees([m("t3_s", None, "title"), m("t1_a", "t3_s", "first"),
                         m("t1_b", "t1_a", "reply"), m("t1_c", "t1_gone", "orphan"),
                         m("t1_a", "t3_s", "edited")])
  assert {k: [x.text for x in v] for k, v in trees.items()} == {
      "t3_s": ["title", "edited", "reply"], "t1_gone": ["orphan"]}
