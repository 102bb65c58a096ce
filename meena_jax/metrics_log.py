"""A run's metrics: ``metrics.jsonl`` (one JSON record a line) and TensorBoard through CLU.

The one writer of every training loop (pretraining, SFT, reward model, DPO, PPO), so all runs
log alike. Process 0 writes; the others log nothing (their records are the same numbers).
"""
import json
import os
import pathlib

import jax
from clu import metric_writers


class MetricsLog:
  """Appends records to ``run_dir/metrics.jsonl`` and their numbers to ``run_dir/tensorboard``."""

  def __init__(self, run_dir):
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    writes = jax.process_index() == 0
    self._writer = metric_writers.create_default_writer(
        run_dir / "tensorboard", just_logging=not writes, asynchronous=False)
    self._file = open(run_dir / "metrics.jsonl" if writes else os.devnull, "a",  # pylint: disable=consider-using-with
                      encoding="utf-8")

  def write(self, step: int, record: dict) -> dict:
    """Writes ``{"step": step, **record}`` (flushed, so a crash loses no logged record) and
    returns it."""
    record = {"step": step, **{k: v for k, v in record.items() if k != "step"}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    self._writer.write_scalars(step, {k: v for k, v in record.items()
                                      if k != "step" and isinstance(v, (int, float))})
    return record

  def close(self):
    self._writer.close()
    self._file.close()
