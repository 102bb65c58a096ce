"""The tiny run with every path on Cloud Storage, against the emulator (``tests/gcs_emulator.py``):
MODEL_DIR, DATA_DIR (TFDS files, vocabulary, token store) and the outputs all ``gs://``. One
uninterrupted run is the reference: a run killed with SIGKILL resumes to its losses bit for bit;
its corrupt and then half-uploaded newest checkpoint is moved aside and saved again (through
injected 503s); eval and chat read it; two hosts writing one checkpoint train like it. Every command runs in an empty
working directory that stays empty, and no local ``gs:`` directory appears."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import gin
import pytest

from meena_jax import commands
from meena_jax.cli import REPO_ROOT
from tests.test_eval import CONVERSATIONS
from tests.test_train_processes import MODEL, environment, train_command

sys.path.insert(0, str(REPO_ROOT))
from launch import local  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.xdist_group("chitchat")
N = 2       # Checkpoint every N steps.
STEPS = 12  # Room for the killed run to be killed in: saves pace it (orbax waits for the last).
DEVICES = 4
SHARDS = "--gin.train.input_shards=2"  # Two hosts of two devices read what one of four reads.


def _command(run: str, gs: dict, steps: int = STEPS) -> list:
  return train_command(f"gs://{gs['bucket']}/{run}", gs["tfds"], steps,
                       f"--gin.train.checkpoint_every={N}", SHARDS)


def _run(argv, env, cwd):
  result = subprocess.run(argv, cwd=cwd, env=dict(environment(DEVICES), **env),
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope="session")  # Not per module: xdist may interleave other modules' tests.
def gs(gcs, chitchat_dir, tmp_path_factory):
  """A bucket holding chitchat's prepared TFDS data and vocabulary under ``tfds/``, an empty
  working directory for the commands, and the reference run ``gs://BUCKET/reference``."""
  bucket = f"runs-{uuid.uuid4().hex[:8]}"
  gcs.create_bucket(bucket)
  for path in pathlib.Path(chitchat_dir).rglob("*"):
    if path.is_file() and "meena_jax_tokenized" not in path.parts:
      gcs.write(bucket, f"tfds/{path.relative_to(chitchat_dir)}", path.read_bytes())
  root = tmp_path_factory.mktemp("gcs_runs")
  (root / "work").mkdir()
  gs = {"bucket": bucket, "tfds": f"gs://{bucket}/tfds", "work": root / "work", "root": root}
  _run(_command("reference", gs), gcs.env("reference"), gs["work"])
  gs["reference"] = _losses(gcs, bucket, "reference")
  assert sorted(gs["reference"]) == list(range(1, STEPS + 1))
  return gs


def _losses(gcs, bucket, run) -> dict:
  """step -> loss of a gs:// run, the last record of a step winning (restarts log again)."""
  lines = gcs.read(bucket, f"{run}/metrics.jsonl").decode().splitlines()
  return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def _no_local_traces(gs):
  """Nothing under the working directory; no directory named ``gs:`` on local disk where a
  run could have made one (the temporary directory, the repository, the working directories,
  home; six levels deep, as the before-stop check looks)."""
  assert not list(gs["work"].iterdir())
  for root in {tempfile.gettempdir(), str(REPO_ROOT), os.getcwd(), os.path.expanduser("~")}:
    for directory, subdirectories, _ in os.walk(root):
      assert "gs:" not in subdirectories, directory
      if directory.count(os.sep) - root.count(os.sep) >= 6 or ".venv" in directory:
        subdirectories.clear()


def test_the_reference_run_keeps_everything_on_gcs(gcs, gs):
  run = gcs.objects(gs["bucket"], "reference/")
  for name in ("config.gin", "operative_config.gin", "metrics.jsonl",
               f"checkpoints/{STEPS}/commit_success.txt"):
    assert f"reference/{name}" in run, name
  assert any(name.startswith("reference/tensorboard/events.out.tfevents") for name in run)
  store = gcs.objects(gs["bucket"], "tfds/meena_jax_tokenized/chitchat/")
  assert any(name.endswith("/meta.json") for name in store)  # Built from TFDS files on GCS.
  _no_local_traces(gs)


def test_sigkill_on_gcs_then_restart_resumes_bit_for_bit(gcs, gs):
  bucket, argv = gs["bucket"], _command("killed", gs)
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      argv, cwd=gs["work"], env=dict(environment(DEVICES), **gcs.env("killed")),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.monotonic() + 600
  while f"killed/checkpoints/{N}/commit_success.txt" not in gcs.objects(
      bucket, f"killed/checkpoints/{N}/"):
    assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)  # Mid-run, maybe mid-upload: no goodbye, no flush.
  process.wait()
  process.stderr.close()
  assert max(_losses(gcs, bucket, "killed")) < STEPS, "the run ended before the kill"

  result = _run(argv, gcs.env("killed"), gs["work"])
  assert f"resumed from gs://{bucket}/killed/checkpoints/" in result.stderr
  assert _losses(gcs, bucket, "killed") == gs["reference"]  # Bit for bit, every step.
  _no_local_traces(gs)


def test_a_corrupt_then_a_half_uploaded_newest_checkpoint_is_moved_aside_and_saved_again(
    gcs, gs):
  bucket, argv, last = gs["bucket"], _command("reference", gs), f"reference/checkpoints/{STEPS}"
  gcs.write(bucket, f"{last}/data/metadata", b"{not json")  # Corrupt.
  # And the step saved again meets two 503s from each client: tensorstore writing its arrays
  # (simple uploads), TensorFlow writing orbax's metadata (resumable uploads).
  upload = rf"^POST /upload/storage/v1/b/{bucket}/o\?uploadType="
  gcs.fail(upload + rf"media&name=reference%2Fcheckpoints%2F{STEPS}%2F", 503, 2)
  gcs.fail(upload + rf"resumable&name=reference%2Fcheckpoints%2F{STEPS}%2F", 503, 2)
  try:
    result = _run(argv, gcs.env("damaged"), gs["work"])
    assert [f["seen"] for f in gcs.faults()] == [2, 2]  # Retried with backoff, and saved.
  finally:
    gcs.clear_faults()
  assert (f"checkpoint at step {STEPS} is unreadable" in result.stderr and
          f"moved to gs://{bucket}/reference/checkpoints_unreadable/{STEPS}" in result.stderr)
  assert gcs.read(bucket, f"reference/checkpoints_unreadable/{STEPS}/data/metadata") == (
      b"{not json")  # Copied, then deleted: kept for inspection.
  assert f"{last}/commit_success.txt" in gcs.objects(bucket, last)  # Saved again.

  gcs.delete(bucket, f"{last}/commit_success.txt")  # An upload cut before its commit marker.
  result = _run(argv, gcs.env("damaged"), gs["work"])
  assert f"checkpoint at step {STEPS} is incomplete" in result.stderr
  assert gcs.objects(bucket, f"reference/checkpoints_unreadable/{STEPS}.1/")
  assert f"{last}/commit_success.txt" in gcs.objects(bucket, last)
  assert _losses(gcs, bucket, "reference") == gs["reference"]  # Retrained steps: the same.
  _no_local_traces(gs)


def test_eval_and_chat_read_the_gcs_checkpoint_and_write_to_gcs(gcs, gs, tmp_path,
                                                                monkeypatch, capsys):
  bucket = gs["bucket"]
  monkeypatch.chdir(gs["work"])
  flags = ["--gin_file=gin/runs/et_tiny_chitchat.gin",
           f"--gin.CHECKPOINT=gs://{bucket}/reference", f"--gin.DATA_DIR={gs['tfds']}",
           *MODEL[:7]]
  contexts = tmp_path / "contexts.jsonl"
  contexts.write_text(json.dumps({"context": ["hi there", "hello! how are you?"]}) + "\n")
  conversations = tmp_path / "mine.jsonl"
  conversations.write_text("".join(json.dumps({"id": f"c{i}", "turns": turns}) + "\n"
                                   for i, turns in enumerate(CONVERSATIONS)))
  gin.clear_config()
  try:
    commands.evaluate(flags)
    gin.clear_config()
    commands.evaluate(flags + [f"--jsonl={conversations}"])  # TFDS prepares it on GCS.
    gin.clear_config()
    commands.chat(flags + ["--gin_file=gin/decoding/chat.gin", f"--input={contexts}",
                           f"--output=gs://{bucket}/answers.jsonl",
                           "--gin.MAX_DECODE_LENGTH=8", "--gin.NUM_SAMPLES=2"])
  finally:
    gin.clear_config()
  result = json.loads(gcs.read(bucket, "reference/eval_validation.json"))
  assert result["step"] == STEPS and result["perplexity"] > 1
  result = json.loads(gcs.read(bucket, "reference/eval_mine.json"))
  assert result["examples"] > 0 and result["split"] == "test"
  assert any(name.endswith("/dataset_info.json") for name in gcs.objects(
      bucket, "tfds/conversations_jsonl/"))
  answers = gcs.read(bucket, "answers.jsonl").decode().splitlines()
  assert len(answers) == 1 and "response" in json.loads(answers[0])
  assert not gcs.objects(bucket, "answers.jsonl.partial")
  capsys.readouterr()
  _no_local_traces(gs)


def test_a_missing_checkpoint_is_one_line_before_any_data_is_prepared(gs, tmp_path):
  gin.clear_config()
  try:
    with pytest.raises(SystemExit) as error:
      commands.evaluate(["--gin_file=gin/runs/et_tiny_chitchat.gin",
                         f"--gin.CHECKPOINT=gs://{gs['bucket']}/never-trained",
                         f"--gin.DATA_DIR={tmp_path / 'unprepared'}"])
  finally:
    gin.clear_config()
  assert str(error.value) == (f"error: CHECKPOINT=gs://{gs['bucket']}/never-trained: no such "
                              f"checkpoint or run directory")
  assert not (tmp_path / "unprepared").exists()  # The task was not prepared first.


def test_two_hosts_write_one_checkpoint_to_gcs_and_train_like_one(gcs, gs, tmp_path):
  bucket, log = gs["bucket"], tmp_path / "hosts.log"
  with open(log, "w") as sink:
    code = local.run_local(_command("two", gs, steps=N), processes=2, devices=2,
                           env=dict(environment(2), **gcs.env("two")), sink=sink, timeout=900,
                           cwd=gs["work"])
  text = log.read_text()
  assert code == 0, text[-3000:]
  assert "[p0]" in text and "[p1]" in text
  two = _losses(gcs, bucket, "two")
  assert two == pytest.approx({s: gs["reference"][s] for s in range(1, N + 1)}, rel=1e-6)
  saved = gcs.objects(bucket, f"two/checkpoints/{N}/")
  assert f"two/checkpoints/{N}/commit_success.txt" in saved
  assert {f"two/checkpoints/{N}/state/array_metadatas/process_0",
          f"two/checkpoints/{N}/state/array_metadatas/process_1"} <= set(saved)
  _no_local_traces(gs)


def test_the_launcher_checks_storage_before_a_slice_is_created(gcs, gs, capsys):
  from launch import tpu_pod  # pylint: disable=import-outside-toplevel
  bucket = gs["bucket"]
  argv = ["--tpu_name=t", "--accelerator_type=v3-8", "--zone=z", "--project=p",
          "--git_ref=main", "--repo_url=https://example.com/meena_jax.git",
          "--skip_compile_check", "--gin_file=gin/runs/et_tiny_chitchat.gin", *MODEL[:7],
          f"--gin.MODEL_DIR=gs://{bucket}/launched", "--dry_run"]

  def refusal(*extra) -> str:
    gin.clear_config()
    with pytest.raises(SystemExit) as error:
      tpu_pod.main(argv + list(extra))
    return str(error.value)

  assert refusal("--gin.MODEL_DIR=gs://no-such-bucket-meena/run") == (
      "MODEL_DIR=gs://no-such-bucket-meena/run: bucket gs://no-such-bucket-meena does not exist "
      "(create it: gcloud storage buckets create gs://no-such-bucket-meena --location=REGION); "
      "fix it before a slice is created")
  assert refusal(f"--gin.DATA_DIR=gs://{bucket}/nothing-prepared") == (
      f"DATA_DIR=gs://{bucket}/nothing-prepared: task chitchat is not prepared there; prepare "
      f"it first (every host would wait on it): python -m meena_jax prepare chitchat "
      f"--data_dir gs://{bucket}/nothing-prepared")
  gin.clear_config()
  tpu_pod.main(argv + [f"--gin.DATA_DIR={gs['tfds']}"])
  printed = capsys.readouterr().out
  gin.clear_config()
  assert (f"# storage: MODEL_DIR=gs://{bucket}/launched is writable (an object written and "
          f"deleted)\n# storage: DATA_DIR={gs['tfds']} holds task chitchat (chitchat/1.0.0)\n"
          f"# storage: token store {gs['tfds']}/meena_jax_tokenized/chitchat/train-inputs32-"
          f"targets32-") in printed
  assert "examples in 1 files; each host reads its own 1/<hosts>\n" in printed
  assert not gcs.objects(bucket, "launched/")  # The probe is gone; nothing was created.
