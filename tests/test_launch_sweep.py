"""launch/sweep.py: parsing and expanding --sweep, refusing keys that would change nothing, the
pod launch per run, the report, and a 2x2 sweep of a tiny model that is interrupted, resumed
and reported (in this process: one Python, every run's step compiled once)."""
import json
import os
import re
import sys

import pytest

import gin
from meena_jax import checkpoints, slices
from meena_jax.cli import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from launch import sweep  # pylint: disable=wrong-import-position

RUN = "--gin_file=gin/runs/et_tiny_chitchat.gin"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  # These tests check the plan and the arithmetic fit; the compiled fit (minutes for Meena)
  # is tested in test_compile.py.
  monkeypatch.setattr(slices, "libtpu_available", lambda: False)
  yield
  gin.clear_config()


def test_sweep_values_are_split_at_top_level_commas():
  assert sweep.parse_sweep("train.learning_rate=[0.01, 0.003]") == (
      "train.learning_rate", ["0.01", "0.003"])
  assert sweep.parse_sweep("MODEL=[@et_tiny, @transformer_tiny]") == (
      "MODEL", ["@et_tiny", "@transformer_tiny"])
  assert sweep.parse_sweep("X=['a, b', (1, 2), [3, 4]]") == ("X", ["'a, b'", "(1, 2)", "[3, 4]"])
  for text, problem in [("LR=0.01", "expected KEY=[VALUE, VALUE, ...]"),
                        ("=[1]", "expected KEY=[VALUE, VALUE, ...]"),
                        ("LR=[0.1,,0.2]", "an empty value (two commas, or no values)"),
                        ("LR=[]", "an empty value (two commas, or no values)"),
                        ("LR=[1, 1]", "a value is listed twice")]:
    with pytest.raises(SystemExit, match="^" + re.escape(f"--sweep {text}: {problem}") + "$"):
      sweep.parse_sweep(text)


def test_product_or_zip_and_readable_run_names():
  sweeps = [("train.learning_rate", ["0.01", "0.003"]), ("MODEL", ["@et_tiny", "@x"])]
  product = sweep.combinations(sweeps, zipped=False)
  assert [sweep.run_name(s) for s in product] == [
      "learning_rate=0.01,model=et_tiny", "learning_rate=0.01,model=x",
      "learning_rate=0.003,model=et_tiny", "learning_rate=0.003,model=x"]
  assert sweep.combinations(sweeps, zipped=True) == [
      (("train.learning_rate", "0.01"), ("MODEL", "@et_tiny")),
      (("train.learning_rate", "0.003"), ("MODEL", "@x"))]
  with pytest.raises(SystemExit, match=r"^--zip needs lists of one length, got A: 2, B: 1$"):
    sweep.combinations([("A", ["1", "2"]), ("B", ["1"])], zipped=True)
  assert sweep.run_name((("ModelConfig.dtype", "'bfloat16'"),
                         ("MODEL", "gin/models/et_small.gin"))) == "dtype=bfloat16,model=et_small"


def plan(*sweeps, base=("--gin.MODEL_DIR=/runs/s",)):
  overrides = [a[len("--gin."):] for a in base]
  return sweep.plan(["gin/runs/et_tiny_chitchat.gin"], overrides,
                    [sweep.parse_sweep(s) for s in sweeps], zipped=False)


def test_model_swaps_the_model_file_and_keeps_the_tasks_vocabulary():
  runs = plan("MODEL=[@et_tiny, @transformer_tiny]", "BATCH_SIZE=[8, 16]")
  run = runs[2]
  assert run.name == "model=transformer_tiny,batch_size=8"
  assert run.gin_files == ("gin/runs/et_tiny_chitchat.gin", "gin/models/transformer_tiny.gin")
  assert run.overrides == ("MODEL_DIR=/runs/s", f"MODEL_DIR=/runs/s/{run.name}",
                           "ModelConfig.vocab_size=4000", "BATCH_SIZE=8")
  gin.clear_config()
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  cli.parse_args(run.argv(), "test")
  config = cli.model_config()  # The transformer file's shapes, chitchat's 4,000 pieces.
  assert (config.block_type, config.num_decoder_layers, config.vocab_size) == (
      "transformer", 4, 4000)


def test_keys_that_would_change_nothing_or_do_not_exist_are_refused():
  with pytest.raises(SystemExit, match=r"^--sweep LR: no binding reads the macro %LR, so "
                                       r"sweeping it changes nothing; sweep a binding"):
    plan("LR=[0.01, 0.003]")
  with pytest.raises(SystemExit, match=r"^run learning_rat=0.1: .*learning_rat"):
    plan("train.learning_rat=[0.1, 0.2]")
  with pytest.raises(SystemExit, match=r"^--sweep MODEL: @et_huge is not a model: give @NAME "
                                       r"for gin/models/NAME.gin, or a .gin path$"):
    plan("MODEL=[@et_huge]")
  with pytest.raises(SystemExit, match=r"^train.model_dir \(the MODEL_DIR macro\) is required"):
    plan("BATCH_SIZE=[8]", base=())


def test_a_failed_run_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  runs = plan("BATCH_SIZE=[8, 16, 32]", base=(f"--gin.MODEL_DIR={tmp_path}",))
  trained = []

  def diverging_train():
    trained.append(cli._value("train.batch_size"))  # pylint: disable=protected-access
    if trained[-1] == 16:
      raise FloatingPointError("loss became NaN")
  monkeypatch.setattr(cli, "configured_train", diverging_train)
  with pytest.raises(SystemExit, match=r"^1 of 3 runs failed: batch_size=16$"):
    sweep.run_locally(runs)
  assert trained == [8, 16, 32]
  assert "[2/3] batch_size=16: failed: FloatingPointError: loss became NaN\n" in (
      capsys.readouterr().out)
  assert json.loads((tmp_path / "batch_size=32" / "sweep.json").read_text())["settings"] == {
      "BATCH_SIZE": "32"}


def test_pod_mode_emits_one_checked_launch_per_run(gcs, capsys):
  gcs.create_bucket("bkt")  # Each run's MODEL_DIR is checked writable before its slice.
  sweep.main([RUN, "--gin.MODEL_DIR=gs://bkt/sweep", "--gin.BATCH_SIZE=256",
              "--sweep", "train.learning_rate=[0.01, 0.003]", "--pod", "--dry_run",
              "--tpu_name=sw", "--zone=z", "--project=p", "--accelerator_type=v3-32",
              "--git_ref=main", "--repo_url=https://example.com/meena_jax.git"])
  printed = capsys.readouterr().out
  assert printed.count("# create: create the slice\n") == 2
  assert "## run 2/2: learning_rate=0.003 on sw-1\n# v3-32: 32 JAX devices" in printed
  assert ("# storage: MODEL_DIR=gs://bkt/sweep/learning_rate=0.003 is writable (an object "
          "written and deleted)\n") in printed
  assert ("--gin.MODEL_DIR=gs://bkt/sweep/learning_rate=0.003 "
          "--gin.train.learning_rate=0.003 --distributed;") in printed
  with pytest.raises(SystemExit, match=r"^--pod needs --zone, --project, --accelerator_type$"):
    sweep.main([RUN, "--gin.MODEL_DIR=gs://bkt/s", "--sweep", "BATCH_SIZE=[256]", "--pod",
                "--tpu_name=sw"])


def test_report_lists_every_run_with_its_numbers(tmp_path):
  for index, (name, losses, ppl) in enumerate([("a=1", [5.0, 4.25], [90.0, 70.5]),
                                               ("a=2", [5.0, 4.5], [95.0, 80.0]),
                                               ("a=3", None, None)]):
    run = tmp_path / name
    run.mkdir()
    (run / "sweep.json").write_text(json.dumps(
        {"index": index, "name": name, "settings": {"A": name[2:]}, "train_steps": 4}))
    if losses:
      records = [{"step": 2 * (i + 1), "loss": x} for i, x in enumerate(losses)]
      records += [{"step": 2 * (i + 1), "eval_perplexity": x} for i, x in enumerate(ppl)]
      (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  table, png = sweep.report(tmp_path)
  assert table.splitlines() == [
      "run  settings  steps  final loss  best eval ppl",
      "---  --------  -----  ----------  -------------",
      "a=1  A=1         4/4       4.250          70.50",
      "a=2  A=2         4/4       4.500          80.00",
      "a=3  A=3         0/4           -              -"]
  assert png == tmp_path / "sweep.png" and (tmp_path / "sweep.png").stat().st_size > 0


# A tiny ET/Transformer (d_model 32, one decoder block) on chitchat: three steps, eval at 3.
TINY = ["--gin.ModelConfig.d_model=32", "--gin.ModelConfig.d_ff=64",
        "--gin.ModelConfig.num_decoder_layers=1", "--gin.BATCH_SIZE=4", "--gin.INPUT_LENGTH=32",
        "--gin.TARGET_LENGTH=16", "--gin.PACKED_INPUT_LENGTH=64", "--gin.PACKED_TARGET_LENGTH=16",
        "--gin.TRAIN_STEPS=3", "--gin.EVAL_EVERY=3",
        "--gin.train.log_every=1", "--gin.train.checkpoint_every=2",
        "--gin.train.eval_batch_size=64", "--gin.train.progress=False"]


@pytest.mark.xdist_group("chitchat")
def test_a_2x2_sweep_runs_resumes_after_an_interruption_and_reports_4_runs(
    chitchat_dir, tmp_path, monkeypatch, capsys):
  # Seeds leave the compiled programs as they are, so the second seed's runs (and the resumed
  # one) read their compilations from the persistent cache: two models' compiles, not four.
  root = tmp_path / "sweep"
  argv = [RUN, f"--gin.MODEL_DIR={root}", f"--gin.DATA_DIR={chitchat_dir}", *TINY,
          "--sweep", "MODEL=[@et_tiny, @transformer_tiny]", "--sweep", "train.seed=[0, 1]"]
  names = ["model=et_tiny,seed=0", "model=et_tiny,seed=1", "model=transformer_tiny,seed=0",
           "model=transformer_tiny,seed=1"]

  # Interrupt the second run at step 3, after step 2's checkpoint, as Ctrl-C would.
  real_manager = checkpoints.checkpoint_manager

  def interrupting_manager(model_dir, keep=3):
    manager = real_manager(model_dir, keep)
    if str(model_dir).endswith(names[1]):
      save = manager.save

      def save_or_interrupt(step, *args, **kwargs):
        if step == 3:
          raise KeyboardInterrupt
        return save(step, *args, **kwargs)
      manager.save = save_or_interrupt
    return manager
  monkeypatch.setattr(checkpoints, "checkpoint_manager", interrupting_manager)
  with pytest.raises(KeyboardInterrupt):
    sweep.main(argv)
  monkeypatch.setattr(checkpoints, "checkpoint_manager", real_manager)
  first = capsys.readouterr().out
  assert f"[2/4] {names[1]}: training to step 3" in first and "[3/4]" not in first
  assert checkpoints.checkpoint_step(root / names[1]) == 2

  sweep.main(argv)  # The same command again finishes the sweep.
  second = capsys.readouterr().out
  assert f"[1/4] {names[0]}: finished (3 steps), skipped" in second
  for i in (1, 2, 3):
    assert f"[{i + 1}/4] {names[i]}: training to step 3" in second
    assert checkpoints.checkpoint_step(root / names[i]) == 3
  resumed = [json.loads(line) for line in (root / names[1] / "metrics.jsonl").open()]
  assert [r["step"] for r in resumed if "loss" in r] == [1, 2, 3, 3]  # From 2, not from 0.
  operative = (root / names[3] / "operative_config.gin").read_text()
  assert "train.seed = 1" in operative
  assert "ModelConfig.block_type = 'transformer'" in operative

  table, png = sweep.report(root)
  rows = table.splitlines()[2:]
  assert [row.split()[0] for row in rows] == names
  for row, name in zip(rows, names):
    run_cells = row.split()
    assert run_cells[-3] == "3/3", row
    assert 0 < float(run_cells[-2]) < 20 and 1 < float(run_cells[-1]) < 1e6, row
  assert os.path.getsize(png) > 0
  sweep.main(["report", str(root)])
  assert capsys.readouterr().out.startswith(table)


def test_the_report_of_a_sweep_on_gcs_reads_and_writes_there(gcs):
  gcs.create_bucket("sweeps")
  for index, name in enumerate(("a=1", "a=2")):
    gcs.write("sweeps", f"s/{name}/sweep.json", json.dumps(
        {"index": index, "settings": {"A": name[2:]}, "train_steps": 2}).encode())
    gcs.write("sweeps", f"s/{name}/metrics.jsonl", "".join(
        json.dumps(r) + "\n" for r in ({"step": 2, "loss": 4.0 + index},
                                       {"step": 2, "eval_perplexity": 50.0 + index})).encode())
  table, png = sweep.report("gs://sweeps/s")
  assert table.splitlines()[2:] == ["a=1  A=1         2/2       4.000          50.00",
                                    "a=2  A=2         2/2       5.000          51.00"]
  assert str(png) == "gs://sweeps/s/sweep.png"
  assert gcs.read("sweeps", "s/sweep.png")[:8] == b"\x89PNG\r\n\x1a\n"
