"""What both preference learners share: epochs of shuffled prompt batches and one jitted step,
run by the trainer's loop (``loop.py``: checkpoints, metrics, exact resume).

The reward model and DPO differ only in the loss (``loss(params, batch, key) -> (loss,
{"pairs", "correct"})``) and in the parameters they start from. The step is
``state.TrainState`` updated by Adam on a cosine-decayed learning rate (InstructGPT's RM
and PPO use Adam; Meena's Adafactor scales steps by parameter size, which fine-tuning learning
rates are not quoted in). Batches are rows of ``preference_data.encode_comparisons`` arrays.
"""
from typing import Callable, Optional

import jax
import numpy as np
import optax

from meena_jax import input_pipeline, loop, partitioning, storage
from meena_jax import state as state_lib


def adam(learning_rate: float, total_steps: int, warmup_steps: int = 0,
         clip_norm: Optional[float] = 1.0) -> optax.GradientTransformation:
  """Adam on a cosine decay to 10% over ``total_steps`` (after a linear warmup), gradients
  clipped to ``clip_norm``."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0 if warmup_steps else learning_rate, learning_rate, warmup_steps,
      max(total_steps, warmup_steps + 1), end_value=0.1 * learning_rate)
  chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  return optax.chain(*chain, optax.adam(schedule))


def _batch_order(rows: int, batch_size: int, epochs: int, seed: int) -> list:
  """Row indices of every step: each epoch a fresh permutation, cut into full batches."""
  order = []
  for epoch in range(epochs):
    permutation = np.random.default_rng([seed, epoch]).permutation(rows)
    order += [permutation[i:i + batch_size] for i in range(0, rows - batch_size + 1,
                                                           batch_size)]
  return order


def fit(loss: Callable, module, params, data: dict, *, run_dir, mesh, batch_size: int,
        epochs: int, learning_rate: float, seed: int = 0, log_every: int = 10,
        checkpoint_every: int = 0, keep_checkpoints: int = 2,
        finalize: Optional[Callable] = None, evaluate: Optional[Callable] = None,
        progress: bool = True) -> tuple:
  """Trains ``params`` (of ``module``, placed by its axis rules) on ``data`` with ``loss``;
  returns ``(params, records)``.

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
  abstract = state_lib.abstract_state(state_lib.abstract_params(module, mesh), optimizer)
  manager, state, _ = loop.start(
      run_dir, abstract, lambda: state_lib.state_from_params(params, optimizer, abstract),
      keep_checkpoints)

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(state.params, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    metrics = {"loss": value, "grad_norm": optax.tree.norm(grads), **stats}
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), metrics

  shardings, replicated = state_lib.shardings(abstract), partitioning.replicated(mesh)
  train_step = jax.jit(train_step, donate_argnums=(0,),
                       in_shardings=(shardings, partitioning.batch_sharding(mesh), replicated),
                       out_shardings=(shardings, replicated))
  key = jax.random.key(seed)

  def step(state, number):
    batch = input_pipeline.to_global({k: v[order[number - 1]] for k, v in data.items()}, mesh)
    return train_step(state, batch, key)

  def summarize(number, sums, steps, seconds):
    return {"loss": sums["loss"] / steps, "accuracy": sums["correct"] / max(sums["pairs"], 1.0),
            "grad_norm": sums["grad_norm"] / steps,
            "epoch": (number - 1) * epochs // len(order) + 1, "step_s": seconds / steps}

  state, records = loop.run(
      step, state, first_step=int(state.step), manager=manager, run_dir=run_dir,
      cadence=loop.Cadence(len(order), log_every, checkpoint_every or len(order),
                           keep_checkpoints=keep_checkpoints),
      summarize=summarize, progress=progress, description=storage.path(run_dir).name,
      finalize=(lambda s: s.replace(params=finalize(s.params))) if finalize else None,
      evaluate=(lambda s: evaluate(s.params)) if evaluate else None,
      shown=("loss", "accuracy"))
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


