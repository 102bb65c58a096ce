"""The one training loop: pretraining and SFT (``train``), the reward model and DPO
(``posttrain.preference_training``) and PPO (``posttrain.ppo``) all run it.

A trainer brings its abstract state (``state.abstract_state``: shapes and shardings), how to
build a fresh one, a ``step(state, number) -> (state, metrics)`` that reads its own batch and
runs its jitted program, and how a window of summed metrics reads as a log record. The loop
does the rest, once for all of them: restore the newest readable checkpoint or build the state,
move the input to its saved position, sum metrics over a window on the device, stop on a
non-finite number before it is saved, checkpoint on a cadence (with the input position), run
the evaluation, write ``metrics.jsonl`` and TensorBoard, show progress.
"""
import dataclasses
import logging
import math
import time
from typing import Any, Callable, Optional, Sequence

import jax
import tqdm

from meena_jax import checkpoints
from meena_jax import metrics_log as metrics_log_lib

log = logging.getLogger("meena_jax.loop")


class NonFiniteLossError(FloatingPointError):
  """A logged metric (loss, gradient norm, ...) stopped being finite; names the step range."""


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the loop logs, checkpoints and evaluates (every N steps, and always after the last).
  ``eval_every`` 0: evaluate only after the last step (when the trainer has an evaluation)."""
  total_steps: int
  log_every: int = 10
  checkpoint_every: int = 200
  eval_every: int = 0
  keep_checkpoints: int = 3

  def __post_init__(self):
    for name in ("log_every", "checkpoint_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")


def start(run_dir, abstract, init: Callable[[], Any], keep_checkpoints: int = 3) -> tuple:
  """``(manager, state, saved position or None)``: the newest readable checkpoint of
  ``run_dir`` restored into ``abstract``'s shapes and shardings (a corrupt one is moved aside,
  see ``checkpoints.restore_latest``), or ``init()`` when there is none. Nothing is allocated
  for a fresh state that a checkpoint then overwrites."""
  manager = checkpoints.checkpoint_manager(run_dir, keep_checkpoints)
  restored = checkpoints.restore_latest(manager, abstract)
  if restored is None:
    return manager, init(), None
  log.info("resumed from %s", manager.directory / str(manager.latest_step()))
  return (manager, *restored)


def continue_input(batches, position: Optional[dict], start_step: int, batches_per_step: int = 1):
  """Moves ``batches`` (an ``input_pipeline.TrainInput``) to where the checkpoint left it: its
  saved position (``position["input"]``), in constant time. A checkpoint without one (written
  before positions were saved) is replayed batch by batch, with a warning."""
  if position is None:
    return
  if "input" in position:
    batches.restore(position["input"])
    return
  count = start_step * batches_per_step
  log.warning("the checkpoint at step %d has no input position (an older run): replaying %d "
              "batches to reach it", start_step, count)
  for _ in tqdm.trange(count, desc="replay input", unit="batch", mininterval=5.0):
    next(batches)


class _Window:
  """Metrics summed since the last record, left on the device until a record needs them; the
  wall time includes reading input, so rates are what the run achieves."""

  def __init__(self, last_step: int):
    self.last_step, self.steps, self.sums = last_step, 0, None
    self.started = time.perf_counter()

  def add(self, metrics: dict):
    self.sums = metrics if self.sums is None else jax.tree_util.tree_map(
        lambda a, b: a + b, self.sums, metrics)
    self.steps += 1

  def fetch(self) -> dict:
    """The sums as floats (blocks on the device); raises before a bad state is saved."""
    sums = {k: float(v) for k, v in jax.device_get(self.sums).items()}
    if not all(math.isfinite(v) for v in sums.values()):
      raise NonFiniteLossError(
          f"a metric became non-finite between steps {self.last_step + 1} and "
          f"{self.last_step + self.steps}: {sums}")
    return sums


def run(step: Callable, state, *, first_step: int, cadence: Cadence, manager, run_dir,
        summarize: Callable[[int, dict, int, float], dict],
        position: Callable[[int], dict] = lambda number: {"step": number},
        evaluate: Optional[Callable[[Any], dict]] = None,
        finalize: Optional[Callable[[Any], Any]] = None,
        on_record: Optional[Callable[[dict], None]] = None, progress: bool = True,
        description: str = "train", shown: Sequence[str] = ("loss",)) -> tuple:
  """Steps ``first_step + 1 .. cadence.total_steps``; returns ``(state, records)``.

  ``step(state, number) -> (state, metrics)``: metrics are scalars (device or host) summed over
  a window; ``summarize(number, sums, steps, seconds) -> record`` reads the window ending at
  step ``number``. ``position(number)``
  is the checkpoint's data item (the input position; every process calls it). ``finalize``
  changes the state after the last step, before its checkpoint (the reward model's bias);
  ``evaluate(state) -> dict`` is logged every ``cadence.eval_every`` steps and after the last.
  ``on_record`` sees every record once written. ``shown``: record keys on the progress bar
  (process 0 only).
  """
  metrics_log, records = metrics_log_lib.MetricsLog(run_dir), []
  bar = tqdm.tqdm(total=cadence.total_steps, initial=first_step, desc=description, unit="step",
                  dynamic_ncols=True, disable=not progress or jax.process_index() > 0)

  def write(number, record):
    records.append(metrics_log.write(number, record))
    postfix = {k: f"{records[-1][k]:.4g}" for k in shown if k in records[-1]}
    if postfix:  # An evaluation record keeps the training numbers on the bar.
      bar.set_postfix(postfix)
    if on_record is not None:
      on_record(records[-1])

  window = _Window(first_step)
  try:
    for number in range(first_step + 1, cadence.total_steps + 1):
      state, metrics = step(state, number)
      window.add(metrics)
      last = number == cadence.total_steps
      checkpoint = number % cadence.checkpoint_every == 0 or last
      if number % cadence.log_every == 0 or checkpoint:
        write(number, summarize(number, window.fetch(), window.steps,
                                time.perf_counter() - window.started))
        window = _Window(number)
      if last and finalize is not None:
        state = finalize(state)
      if checkpoint:
        checkpoints.save(manager, number, state, position(number))
      if evaluate is not None and (last or (cadence.eval_every
                                            and number % cadence.eval_every == 0)):
        write(number, evaluate(state))
      bar.update(1)
  finally:
    bar.close()
    metrics_log.close()
    manager.wait_until_finished()
  return state, records
