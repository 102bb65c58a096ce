"""A run's metrics: ``metrics.jsonl`` (one JSON record a line) and TensorBoard through CLU.

The one writer of every training loop (pretraining, SFT, reward model, DPO, PPO), so all runs
log alike. Process 0 writes; the others log nothing (their records are the same numbers).
The run directory may be ``gs://`` (``storage``): GCS has no append, so TensorFlow's
filesystem, under both files here, uploads the whole file again at each flush; records are
small and a flush comes once per log window, which keeps that cheap for a run's lifetime.
"""
import contextlib
import json
import os

import jax
from clu import metric_writers

from meena_jax import storage


class MetricsLog:
  """Appends records to ``run_dir/metrics.jsonl`` and their numbers to ``run_dir/tensorboard``."""

  def __init__(self, run_dir):
    run_dir = storage.path(run_dir)
    writes = jax.process_index() == 0
    if writes and not storage.is_remote(run_dir):
      run_dir.mkdir(parents=True, exist_ok=True)
    self._writer = metric_writers.create_default_writer(
        os.fspath(run_dir / "tensorboard"), just_logging=not writes, asynchronous=False)
    self._open = contextlib.ExitStack()  # epath's gs:// files exist inside a `with` only.
    self._file = self._open.enter_context(
        (run_dir / "metrics.jsonl").open("a") if writes
        else open(os.devnull, "a", encoding="utf-8"))  # pylint: disable=consider-using-with

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
    self._open.close()
