"""SFT through the ordinary trainer: a run started from a checkpoint's parameters continues
from its loss (not from scratch), with a cosine schedule; epochs become steps of the trainer's
packed rows."""
import dataclasses
import math

import pytest

from meena_jax import input_pipeline, token_store
from meena_jax.posttrain import commands
from meena_tasks import seqio_tasks
from tests.conftest import TOKEN_CACHE
from tests.test_train import CFG, run as train_run

pytestmark = pytest.mark.xdist_group("chitchat")


def run(task, model_dir, steps, **overrides):
  """``test_train``'s run, checkpointing only at the end, at a learning rate that moves."""
  return train_run(task, model_dir, steps, **{"checkpoint_every": steps, "learning_rate": 0.01,
                                              **overrides})


def test_sft_starts_from_the_checkpoint_and_decays_to_zero(chitchat_dir, tmp_path):
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  pretrain = run(task, tmp_path / "pre", 8)  # Its first loss is a fresh model's.
  sft = run(task, tmp_path / "sft", 3, lr_schedule="cosine",
            init_checkpoint=str(tmp_path / "pre"),
            model_config=dataclasses.replace(CFG, dropout_rate=0.2))
  assert [r["step"] for r in sft] == [1, 2, 3]  # A fresh step count and optimizer.
  assert sft[0]["loss"] < pretrain[0]["loss"] - 0.2  # It starts where pretraining got to.
  assert sft[0]["loss"] == pytest.approx(pretrain[-1]["loss"], abs=0.5)
  assert sft[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)


def test_epochs_become_steps_over_the_packed_rows(chitchat_dir):
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  kwargs = dict(task=task, batch_size=32, input_length=32, target_length=16,
                split="validation", data_cache_dir=TOKEN_CACHE)
  one = commands.sft_steps(epochs=1, **kwargs)
  two = commands.sft_steps(epochs=2, **kwargs)
  assert one > 1 and two in (2 * one - 1, 2 * one)
  # The rows are the trainer's: one pass of TrainInput's packer fills them (within a few rows,
  # its order being shuffled), and rows four times as long hold about four times as much.
  lengths = {"inputs": 32, "targets": 16}
  sources = token_store.tokenized_sources(task, "validation", lengths, TOKEN_CACHE)
  rows = input_pipeline.epoch_rows(sources, lengths)
  shuffled = input_pipeline.TrainInput(sources, 1, lengths, seed=0)
  examples = len(sources[0][0])
  seen, count = 0, 0
  while seen < examples:
    seen += int(next(shuffled)["decoder_segment_ids"].max())
    count += 1
  assert abs(count - rows) <= max(2, rows // 50) and one == math.ceil(rows / 32)
  print(f"rows {rows}, shuffled pass {count}")
  long_rows = input_pipeline.epoch_rows(sources, {"inputs": 128, "targets": 64})
  print(f"rows of 32/16: {rows}, of 128/64: {long_rows}")
  assert 3.0 < rows / long_rows < 4.4
