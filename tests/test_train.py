"""The training loop on chitchat: metrics, checkpoints, and a resume that continues exactly."""
import dataclasses
import json

import pytest

from meena_jax import checkpoints, commands, loop, train
from meena_jax.model import Seq2Seq
from meena_tasks import seqio_tasks
from tests.conftest import TINY
from tests.conftest import TOKEN_CACHE

pytestmark = pytest.mark.xdist_group("chitchat")
CFG = dataclasses.replace(TINY, vocab_size=4000)


def run(task, model_dir, steps, **overrides):
  kwargs = dict(model_config=CFG, task=task, model_dir=str(model_dir), batch_size=4,
                input_length=32, target_length=16, train_steps=steps, log_every=1,
                data_cache_dir=TOKEN_CACHE,
                checkpoint_every=2, progress=False)
  return train.train(**{**kwargs, **overrides})


def test_resumed_run_continues_exactly_where_it_stopped(chitchat_dir, tmp_path):
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  straight = run(task, tmp_path / "straight", 6)
  first = run(task, tmp_path / "resumed", 4)
  second = run(task, tmp_path / "resumed", 6)  # Restores step 4, then trains 5 and 6.
  assert [r["step"] for r in first + second] == list(range(1, 7))
  assert [r["loss"] for r in first + second] == [r["loss"] for r in straight]  # Bit for bit.
  assert straight[-1]["loss"] < straight[0]["loss"]
  lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))
  record = json.loads(lines[-1])
  for key in ("loss", "perplexity", "learning_rate", "tokens_per_s", "step_s",
              "tflops_per_device", "grad_norm"):
    assert record[key] > 0, key
  checkpoints = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
  assert checkpoints == ["2", "4", "6"]


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(chitchat_dir, tmp_path):
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  run(task, tmp_path, 4)
  for path in (tmp_path / "checkpoints" / "4" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  resumed = run(task, tmp_path, 5)
  assert [r["step"] for r in resumed] == [3, 4, 5]  # Restored step 2 and went on.


def test_a_corrupt_newest_checkpoint_is_moved_aside_and_saved_again(chitchat_dir, tmp_path,
                                                                     caplog):
  """Rerunning the same command after the newest checkpoint got corrupted retrains to the same
  step and saves it again; the corrupt one is kept aside, named in the log. (orbax skips a step
  at or below its newest, so before, nothing was saved and the run stayed broken.)"""
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  run(task, tmp_path, 4)
  corrupt(tmp_path / "checkpoints" / "4")
  with caplog.at_level("WARNING", logger="meena_jax.checkpoints"):
    resumed = run(task, tmp_path, 4)
  assert [r["step"] for r in resumed] == [3, 4]
  aside = tmp_path / "checkpoints_unreadable" / "4"
  (line,) = checkpoint_warnings(caplog)  # One line, not orbax's traceback.
  assert aside.is_dir() and str(aside) in line and "step 4 is unreadable" in line
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]
  _, step = checkpoints.load(tmp_path, Seq2Seq(CFG))
  assert step == 4


def test_loading_falls_back_past_an_unreadable_checkpoint_and_names_it(chitchat_dir, tmp_path,
                                                                        caplog):
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  run(task, tmp_path, 4)
  corrupt(tmp_path / "checkpoints" / "4")
  with caplog.at_level("WARNING", logger="meena_jax.checkpoints"):
    _, step = checkpoints.load(tmp_path, Seq2Seq(CFG))
  assert step == 2
  (line,) = checkpoint_warnings(caplog)
  assert "checkpoints/4: " in line and "trying the one before" in line
  corrupt(tmp_path / "checkpoints" / "2")
  with pytest.raises(checkpoints.UnreadableCheckpointError) as error:
    checkpoints.load(tmp_path, Seq2Seq(CFG))
  assert str(error.value).startswith(f"no readable checkpoint in {tmp_path} (the last tried, ")
  assert "\n" not in str(error.value)


def checkpoint_warnings(caplog) -> list:
  lines = [r.getMessage() for r in caplog.records if r.name == "meena_jax.checkpoints"]
  assert all("\n" not in line for line in lines)
  return lines


def corrupt(step_dir):
  for path in (step_dir / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(path.read_bytes()[:7])


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
    chitchat_dir, tmp_path):
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  with pytest.raises(loop.NonFiniteLossError, match="between steps 2 and 2"):
    run(task, tmp_path, 4, learning_rate=1e15, checkpoint_every=1)  # Step 2's loss overflows.
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [1]


def test_info_logs_show_after_the_libraries_that_install_a_root_handler():
  """orbax puts a WARNING root handler in place on import; the edge's configure_logging must
  still make the trainer's INFO lines (mesh, "resumed at step N from ...") visible."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  code = ("import logging, meena_jax.train\nfrom meena_jax import cli\ncli.configure_logging()\n"
          "logging.getLogger('meena_jax.train').info('resumed at step 7 from /r/checkpoints/7')")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
  assert "meena_jax.train resumed at step 7 from /r/checkpoints/7" in result.stderr


def _cli_train(tmp_path, model_dir, data_dir, *extra):
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  try:
    with pytest.raises(SystemExit) as error:
      commands.train([f"--gin_file={cli.REPO_ROOT}/gin/runs/et_tiny_chitchat.gin",
                  f"--gin.MODEL_DIR={model_dir}", f"--gin.DATA_DIR={data_dir}",
                  "--gin.TRAIN_STEPS=1", *extra])
  finally:
    gin.clear_config()
  assert "\n" not in str(error.value)
  return str(error.value)


def test_a_model_dir_under_a_regular_file_is_one_line_and_writes_nothing(tmp_path):
  (tmp_path / "file").write_text("")
  message = _cli_train(tmp_path, tmp_path / "file" / "run", tmp_path / "data")
  assert message == (f"MODEL_DIR={tmp_path}/file/run: {tmp_path}/file is a regular file, not a "
                     f"directory; choose another --gin.MODEL_DIR")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.fixture
def read_only_dir(tmp_path):
  """An empty read-only mount (root ignores permission bits, so chmod would not do)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  path = tmp_path / "ro"
  path.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                    capture_output=True, check=False).returncode:
    pytest.skip("cannot mount a read-only tmpfs here (not root, or no mount permission)")
  yield path
  subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_model_dir_or_data_dir_is_one_line_and_leaves_nothing(tmp_path,
                                                                         read_only_dir):
  message = _cli_train(tmp_path, read_only_dir / "run", tmp_path / "data")
  assert message == (f"MODEL_DIR={read_only_dir}/run: it cannot be written (Read-only file "
                     f"system); choose another --gin.MODEL_DIR")
  message = _cli_train(tmp_path, tmp_path / "run", read_only_dir)
  assert message == (f"error: DATA_DIR={read_only_dir}: task 'chitchat' is not prepared there "
                     f"and it cannot be written (Read-only file system); pass a "
                     f"writable --gin.DATA_DIR, or one where it is prepared")
  assert not (tmp_path / "run").exists()  # The MODEL_DIR this run created is gone again.


def test_packed_rows_shorter_than_the_cut_are_one_line_and_leave_no_model_dir(chitchat_dir,
                                                                             tmp_path):
  message = _cli_train(tmp_path, tmp_path / "run", chitchat_dir, "--gin.INPUT_LENGTH=32",
                       "--gin.TARGET_LENGTH=16", "--gin.PACKED_INPUT_LENGTH=24",
                       f"--gin.train.data_cache_dir={TOKEN_CACHE}")
  assert message == ("error: a packed inputs row of 24 tokens cannot hold an example of 32: "
                     "raise PACKED_INPUT_LENGTH or lower INPUT_LENGTH (the per-example cut)")
  assert not (tmp_path / "run").exists()
