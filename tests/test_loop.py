"""The one training loop on a toy state (no model): its cadence of records, checkpoints,
evaluations and the final change, the non-finite stop, and build-or-restore."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meena_jax import loop, partitioning

MESH = partitioning.make_mesh(1, 1, jax.devices()[:1])
REPLICATED = partitioning.replicated(MESH)
ABSTRACT = {"step": jax.ShapeDtypeStruct((), jnp.int32, sharding=REPLICATED),
            "w": jax.ShapeDtypeStruct((3,), jnp.float32, sharding=REPLICATED)}


def fresh():
  return {"step": jnp.zeros((), jnp.int32), "w": jnp.zeros((3,), jnp.float32)}


def step(state, number):
  """Adds ``number`` to w; the metric is the step number (and NaN at step 7 when w says so)."""
  new = {"step": state["step"] + 1, "w": state["w"] + number}
  return new, {"value": jnp.float32(number), "count": 1.0}


def summarize(number, sums, steps, seconds):
  assert seconds >= 0
  return {"mean": sums["value"] / steps, "steps": steps, "counted": sums["count"]}


def run(tmp_path, total, first=None, **kwargs):
  manager, state, position = loop.start(tmp_path, ABSTRACT, fresh, keep_checkpoints=10)
  first = int(state["step"]) if first is None else first
  cadence = kwargs.pop("cadence", loop.Cadence(total, log_every=3, checkpoint_every=4,
                                               eval_every=5, keep_checkpoints=10))
  state, records = loop.run(step, state, first_step=first, cadence=cadence, manager=manager,
                            run_dir=tmp_path, summarize=summarize, progress=False, **kwargs)
  return state, records, position, manager


def test_records_checkpoints_evaluations_and_the_final_change_follow_the_cadence(tmp_path):
  finalized = []

  def finalize(state):
    finalized.append(int(state["step"]))
    return {**state, "w": -state["w"]}

  state, records, _, manager = run(
      tmp_path, 10, evaluate=lambda s: {"eval_w": float(s["w"][0])}, finalize=finalize,
      position=lambda n: {"step": n, "tag": f"at {n}"})
  train = [(r["step"], r["mean"], r["steps"]) for r in records if "mean" in r]
  # Windows close at every 3rd step, every 4th (a checkpoint) and the last.
  assert train == [(3, 2.0, 3), (4, 4.0, 1), (6, 5.5, 2), (8, 7.5, 2), (9, 9.0, 1),
                   (10, 10.0, 1)]
  # Evaluations every 5 steps and after the last, the last one after the final change.
  assert [(r["step"], r["eval_w"]) for r in records if "eval_w" in r] == [(5, 15.0), (10, -55.0)]
  assert finalized == [10] and float(state["w"][0]) == -55.0
  assert manager.all_steps() == [4, 8, 10]
  on_disk = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert on_disk == records
  # A second start restores the newest checkpoint (with the final change) and its position,
  # and builds nothing.
  restored_manager, restored, position = loop.start(tmp_path, ABSTRACT, lambda: pytest.fail("init"))
  assert int(restored["step"]) == 10 and float(restored["w"][0]) == -55.0
  assert position == {"step": 10, "tag": "at 10"}
  restored_manager.close()


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
  whole, _, _, _ = run(tmp_path / "whole", 10)
  run(tmp_path / "split", 10, cadence=loop.Cadence(6, log_every=3, checkpoint_every=4,
                                                   keep_checkpoints=10))
  resumed, records, position, _ = run(tmp_path / "split", 10)
  assert position == {"step": 6} and records[0]["step"] == 8  # Steps 7-8, a checkpoint.
  np.testing.assert_array_equal(resumed["w"], whole["w"])


def test_a_non_finite_metric_stops_before_it_is_saved_naming_the_steps(tmp_path):
  def poisoned(state, number):
    state, metrics = step(state, number)
    return state, {**metrics, "value": jnp.float32(np.nan) if number == 7 else metrics["value"]}

  manager, state, _ = loop.start(tmp_path, ABSTRACT, fresh)
  with pytest.raises(loop.NonFiniteLossError, match="between steps 5 and 8"):
    loop.run(poisoned, state, first_step=0, manager=manager, run_dir=tmp_path,
             cadence=loop.Cadence(10, log_every=100, checkpoint_every=4), summarize=summarize,
             progress=False)
  assert manager.all_steps() == [4]


class Counter:
  """A stand-in input: counts batches; ``restore`` jumps."""

  def __init__(self):
    self.position = 0

  def __next__(self):
    self.position += 1
    return self.position

  def restore(self, saved):
    self.position = saved["at"]


def test_input_continues_from_its_saved_position_or_replays_an_old_checkpoint(caplog):
  batches = Counter()
  loop.continue_input(batches, {"input": {"at": 40}}, start_step=10, batches_per_step=4)
  assert batches.position == 40
  batches = Counter()
  loop.continue_input(batches, {"step": 10}, start_step=10, batches_per_step=4)
  assert batches.position == 40 and "replaying 40 batches" in caplog.text
  batches = Counter()
  loop.continue_input(batches, None, start_step=0)
  assert batches.position == 0
