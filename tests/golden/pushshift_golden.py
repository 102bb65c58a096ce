"""How the pushshift goldens were made: the in-memory pushshift builder of commit 23ea4e9 (before
the Beam pipeline) on a generated dump (``synthetic_pushshift``, 20,000 comments, seed 1) and on
the tests' fixture dump, writing the examples, filter statistics and vocabulary that the Beam
pipeline must reproduce exactly (``tests/test_beam_pipeline.py``). Run from a checkout of that
commit; run on a later one it would compare the pipeline with itself.

  python tests/golden/pushshift_golden.py   # -> /tmp/exp/golden/
"""
import gzip, hashlib, json, os, sys, shutil
sys.path.insert(0, "/work/main")
import tensorflow_datasets as tfds
tfds.disable_progress_bar()
from meena_tasks import builders, synthetic_pushshift
from tests.test_sources import PUSHSHIFT_COMMENTS, write_zst
import pathlib

def capture(builder):
  out = {"statistics": builders.statistics(builder), "examples": {}}
  for split in builder.info.splits:
    rows = []
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      rows.append([ex["id"].decode(), [t.decode() for t in ex["context"]], ex["response"].decode(),
                   [t.decode() for t in ex["context_speakers"]], ex["response_speaker"].decode()])
    out["examples"][split] = sorted(rows)
  return out

root = pathlib.Path("/tmp/exp/golden_work"); shutil.rmtree(root, ignore_errors=True); root.mkdir()
comments, submissions, n = synthetic_pushshift.write_dumps(str(root / "gen"), 20000, seed=1)
config = builders.PushshiftConfig(name="generated", comment_files=(comments,), submission_files=(submissions,))
b = builders.PushshiftReddit(data_dir=str(root / "tfds"), config=config, vocab_size=500)
b.download_and_prepare()
gen = capture(b)
vocab_bytes = b.vocab_file.read_bytes()
gen["vocab_sha256"] = hashlib.sha256(vocab_bytes).hexdigest()
h = hashlib.sha256()
for kind, record in synthetic_pushshift.generate(20000, seed=1):
  h.update(kind.encode() + json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
gen["records_sha256"] = h.hexdigest()
out = pathlib.Path("/tmp/exp/golden"); out.mkdir(exist_ok=True)
(out / "pushshift_generated_20k_seed1.json.gz").write_bytes(gzip.compress(json.dumps(gen, ensure_ascii=False, sort_keys=True).encode(), mtime=0))
vocab_path = out / "pushshift_generated_20k_seed1_500.model"; vocab_path.write_bytes(vocab_bytes)
fixture_comments = write_zst(root / "RC_2015-01.zst", PUSHSHIFT_COMMENTS)
fixture_subs = write_zst(root / "RS_2015-01.zst", [json.dumps({"id": "s1", "title": "Books thread", "author": "mod"})])
config = builders.PushshiftConfig(name="fixture", comment_files=(str(fixture_comments),), submission_files=(str(fixture_subs),))
b = builders.PushshiftReddit(data_dir=str(root / "tfds"), config=config, vocab_file=str(vocab_path))
b.download_and_prepare()
fix = capture(b)
(out / "pushshift_fixture.json").write_text(json.dumps(fix, ensure_ascii=False, sort_keys=True, indent=1))
print({k: len(v) for k, v in gen["examples"].items()}, gen["statistics"]["train"])
print({k: len(v) for k, v in fix["examples"].items()}, fix["statistics"])
