"""Metric files to curves: the training run's and PPO's readers share one parser."""
import json

import pytest

from meena_jax import curves
from meena_jax.posttrain import report


def write(run_dir, records, extra=""):
  run_dir.mkdir(exist_ok=True)
  (run_dir / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in records) + extra)
  return run_dir


def test_a_resumed_run_keeps_the_last_record_of_each_step(tmp_path):
  run = write(tmp_path / "run", [
      {"step": 10, "loss": 5.0}, {"step": 20, "loss": 4.0, "eval_perplexity": 90.0},
      {"step": 20, "loss": 3.5}, {"step": 30, "loss": 3.0, "eval_perplexity": 50.0}])
  train, evaluation = curves.read_metrics(run)
  assert train == {10: 5.0, 20: 3.5, 30: 3.0}
  assert evaluation == {20: 90.0, 30: 50.0}
  assert [r["loss"] for r in report.read_records(run)] == [5.0, 3.5, 3.0]


def test_a_bad_line_or_a_missing_file_is_named(tmp_path):
  run = write(tmp_path / "run", [{"step": 1, "loss": 2.0}], extra="\n{not json\n")
  with pytest.raises(ValueError, match=r"metrics.jsonl:3: not JSON"):
    curves.read_records(run)
  with pytest.raises(ValueError, match=r"metrics.jsonl:3: not JSON"):
    report.read_records(run)
  with pytest.raises(FileNotFoundError, match="no metrics"):
    curves.read_records(tmp_path / "empty")


def test_both_plots_write_a_png(tmp_path):
  run = write(tmp_path / "run", [{"step": s, "loss": 5.0 / s, "eval_perplexity": 9.0 / s,
                                  "reward": 0.1 * s, "kl": 0.2 * s} for s in (1, 2, 3)])
  for path in (curves.plot_runs([run], tmp_path / "a.png"), report.plot([run], tmp_path / "b.png")):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
