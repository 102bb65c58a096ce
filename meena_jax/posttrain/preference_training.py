"""The loop both preference learners share: epochs of shuffled prompt batches, one jitted
step, metrics to JSONL and TensorBoard, orbax checkpoints, exact resume.

The reward model and DPO differ only in the loss (``loss(params, batch, key) -> (loss,
{"pairs", "correct"})``) and in the parameters they start from. The step is
``state.TrainState`` updated by Adam on a cosine-decayed learning rate (InstructGPT's RM
and PPO use Adam; Meena's Adafactor scales steps by parameter size, which fine-tuning learning
rates are not quoted in). Batches are rows of ``preference_data.encode_comparisons`` arrays.
"""
import logging
import math
import pathlib
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from meena_jax import checkpoints, input_pipeline, partitioning
from meena_jax import state as state_lib
from meena_jax import metrics_log as metrics_log_lib
from meena_jax.state import TrainState

log = logging.getLogger("meena_jax.posttrain")


def adam(learning_rate: float, total_steps: int, warmup_steps: int = 0,
         clip_norm: Optional[float] = 1.0) -> optax.GradientTransformation:
  """Adam on a cosine decay to 10% over ``total_steps`` (after a linear warmup), gradients
  clipped to ``clip_norm``."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0 if warmup_steps else learning_rate, learning_rate, warmup_steps,
      max(total_steps, warmup_steps + 1), end_value=0.1 * learning_rate)
  chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  return optax.chain(*chain, optax.adam(schedule))


def state_shardings(params_shardings, optimizer, params) -> TrainState:
  """Shardings of a ``TrainState`` over ``params`` placed by ``params_shardings`` (optimizer
  slots follow their parameter: ``state.abstract_state``)."""
  params = jax.tree_util.tree_map(
      lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), params, params_shardings)
  return state_lib.shardings(state_lib.abstract_state(params, optimizer))


def new_state(params, optimizer, shardings: TrainState) -> TrainState:
  """A step-0 ``TrainState`` over ``params``, born with ``shardings``."""
  init = lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p,
                              opt_state=optimizer.init(p))
  return jax.jit(init, out_shardings=shardings)(params)


def _batch_order(rows: int, batch_size: int, epochs: int, seed: int) -> list:
  """Row indices of every step: each epoch a fresh permutation, cut into full batches."""
  order = []
  for epoch in range(epochs):
    permutation = np.random.default_rng([seed, epoch]).permutation(rows)
    order += [permutation[i:i + batch_size] for i in range(0, rows - batch_size + 1,
                                                           batch_size)]
  return order


def fit(loss: Callable, params, params_shardings, data: dict, *, run_dir, mesh,
        batch_size: int, epochs: int, learning_rate: float, seed: int = 0,
        log_every: int = 10, checkpoint_every: int = 0, keep_checkpoints: int = 2,
        finalize: Optional[Callable] = None, evaluate: Optional[Callable] = None,
        progress: bool = True) -> tuple:
  """Trains ``params`` on ``data`` with ``loss``; returns ``(params, records)``.

  Resumes from the newest checkpoint in ``run_dir`` (the batch order depends only on the seed,
  so a resumed run sees exactly the batches it would have). ``finalize(params) -> params`` runs
  after the last step, before the final checkpoint (the reward model's bias goes there);
  ``evaluate(params) -> dict`` runs after it and its result is logged too. ``progress`` shows
  a bar over the steps on process 0.
  """
  rows = len(data["encoder_input_tokens"])
  if rows < batch_size:
    raise ValueError(f"{rows} prompts are fewer than one batch of {batch_size}")
  order = _batch_order(rows, batch_size, epochs, seed)
  optimizer = adam(learning_rate, len(order))
  shardings = state_shardings(params_shardings, optimizer, params)
  state = new_state(params, optimizer, shardings)
  manager = checkpoints.checkpoint_manager(run_dir, keep_checkpoints)
  restored = checkpoints.restore_latest(manager, jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings))
  if restored is not None:
    state = restored[0]
    log.info("resumed at step %d", int(state.step))

  def step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(state.params, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    metrics = {"loss": value, "grad_norm": optax.tree.norm(grads), **stats}
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), metrics

  replicated = partitioning.replicated(mesh)
  step = jax.jit(step, in_shardings=(shardings, partitioning.batch_sharding(mesh), replicated),
                 out_shardings=(shardings, replicated), donate_argnums=(0,))
  metrics_log, records = metrics_log_lib.MetricsLog(run_dir), []
  key, sums, steps, started = jax.random.key(seed), None, 0, time.perf_counter()
  checkpoint_every = checkpoint_every or len(order)
  bar = tqdm.tqdm(total=len(order), initial=int(state.step), desc=pathlib.Path(run_dir).name,
                  unit="step", dynamic_ncols=True,
                  disable=not progress or jax.process_index() > 0)
  try:
    for number in range(int(state.step) + 1, len(order) + 1):
      batch = input_pipeline.to_global({k: v[order[number - 1]] for k, v in data.items()}, mesh)
      state, metrics = step(state, batch, key)
      sums = metrics if sums is None else jax.tree_util.tree_map(jnp.add, sums, metrics)
      steps += 1
      if number % log_every == 0 or number == len(order):
        sums = {k: float(v) for k, v in jax.device_get(sums).items()}
        record = {"loss": sums["loss"] / max(steps, 1),
                  "accuracy": sums["correct"] / max(sums["pairs"], 1.0),
                  "grad_norm": sums["grad_norm"] / max(steps, 1),
                  "epoch": (number - 1) * epochs // len(order) + 1,
                  "step_s": (time.perf_counter() - started) / max(steps, 1)}
        if not math.isfinite(record["loss"]):
          raise FloatingPointError(f"loss became non-finite by step {number}: {record}")
        records.append(metrics_log.write(number, record))
        bar.set_postfix(loss=f"{record['loss']:.3f}", accuracy=f"{record['accuracy']:.3f}")
        sums, steps, started = None, 0, time.perf_counter()
      if number == len(order) and finalize is not None:
        state = state.replace(params=finalize(state.params))
      if number % checkpoint_every == 0 or number == len(order):
        checkpoints.save(manager, number, state, {"step": number})
      bar.update(1)
    if evaluate is not None:
      records.append(metrics_log.write(len(order), evaluate(state.params)))
  finally:
    bar.close()
    metrics_log.close()
    manager.wait_until_finished()
  return state.params, records


def batched(fn: Callable, data: dict, batch_size: int, mesh) -> np.ndarray:
  """``fn(batch) -> array`` over ``data`` in batches (the last one padded by repeating row 0),
  concatenated on the host."""
  rows = len(data["encoder_input_tokens"])
  outputs = []
  for start in range(0, rows, batch_size):
    index = np.arange(start, start + batch_size)
    index[index >= rows] = 0
    batch = input_pipeline.to_global({k: v[index] for k, v in data.items()}, mesh)
    outputs.append(np.asarray(jax.device_get(fn(batch)))[:min(batch_size, rows - start)])
  return np.concatenate(outputs)


