"""One gradient step: the train state, Meena's Adafactor schedule, and ``train_step``.

Input: a feature-converter batch (``model.py`` lists its keys) already placed on the mesh.
Output: the next ``state.TrainState`` and a flat dict of sums (loss, tokens) and norms, so metrics over
many steps are summed and divided once. ``train.py`` jits ``train_step`` with explicit shardings.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from meena_jax import partitioning
from meena_jax.model import Seq2Seq, loss_fn, model_inputs
from meena_jax.state import TrainState


def meena_schedule(base_learning_rate: float = 0.01, constant_steps: int = 10_000):
  """``base`` for the first ``constant_steps``, then ``base * sqrt(constant_steps / step)``."""
  def schedule(step):
    step = jnp.maximum(step.astype(jnp.float32), 1.0)
    return base_learning_rate * jnp.sqrt(constant_steps / jnp.maximum(step, constant_steps))
  return schedule


def learning_rate_schedule(kind: str = "meena", base_learning_rate: float = 0.01,
                           constant_steps: int = 10_000, total_steps: int = 0):
  """``meena``: constant, then inverse square root (pretraining). ``cosine``: cosine decay from
  ``base`` to 0 over ``total_steps`` (InstructGPT's fine-tuning)."""
  if kind == "meena":
    return meena_schedule(base_learning_rate, constant_steps)
  if kind == "cosine":
    if total_steps < 1:
      raise ValueError(f"lr_schedule='cosine' needs the run's total steps, got {total_steps}")
    return optax.cosine_decay_schedule(base_learning_rate, total_steps)
  raise ValueError(f"lr_schedule={kind!r}: choose 'meena' or 'cosine'")


def make_optimizer(base_learning_rate: float = 0.01, constant_steps: int = 10_000,
                   schedule=None, min_dim_size_to_factor: int = 128
                   ) -> optax.GradientTransformation:
  """optax Adafactor (factored second moments, update clipping 1.0, parameter-scaled steps)
  on Meena's learning-rate schedule, or on ``schedule`` when given.

  A kernel's second moments are factored over its two largest dimensions when the smaller of
  them has at least ``min_dim_size_to_factor`` entries. At optax's 128 the attention kernels
  ``(embed, heads, kv)`` = (2560, 32, 80) of Meena stay unfactored (80 < 128), a full-size
  slot each; at 32 they are factored over (embed, kv) per head, closer to tensor2tensor's
  Meena, whose attention kernels are 2-D (2560, 2560) and factored.
  """
  return optax.adafactor(
      learning_rate=schedule or meena_schedule(base_learning_rate, constant_steps),
      min_dim_size_to_factor=min_dim_size_to_factor)


def _loss_and_grads(model: Seq2Seq, params, batch: dict, key):
  """(summed NLL, token count) and the gradient of the *sum*, for exact accumulation."""
  def summed_loss(params):
    logits = model.apply({"params": params}, **model_inputs(batch), deterministic=False,
                         rngs={"dropout": key})
    return loss_fn(logits, batch["decoder_target_tokens"], batch.get("decoder_loss_weights"))
  (total, count), grads = jax.value_and_grad(summed_loss, has_aux=True)(params)
  return total, count, grads


def train_step(state: TrainState, batch: dict, base_key, *, model: Seq2Seq,
               optimizer: optax.GradientTransformation, num_microbatches: int = 1):
  """Loss -> gradients (optionally accumulated over microbatches) -> Adafactor -> new state.

  The loss is token-weighted over the whole batch: gradients of the summed NLL are added over
  microbatches and divided by the batch's token count once, so accumulation equals one big
  batch (dropout aside). Dropout keys are ``base_key`` folded with the step (and microbatch).
  """
  key = jax.random.fold_in(base_key, state.step)
  if num_microbatches == 1:
    total, count, grad_sum = _loss_and_grads(model, state.params, batch, key)
  else:
    micro = jax.tree_util.tree_map(
        lambda x: x.reshape((num_microbatches, x.shape[0] // num_microbatches) + x.shape[1:]),
        batch)

    def accumulate(carry, inputs):
      index, microbatch = inputs
      t, c, g = _loss_and_grads(model, state.params, microbatch, jax.random.fold_in(key, index))
      return jax.tree_util.tree_map(jnp.add, carry, (t, c, g)), None

    zeros = (jnp.zeros(()), jnp.zeros(()), jax.tree_util.tree_map(jnp.zeros_like, state.params))
    (total, count, grad_sum), _ = jax.lax.scan(
        accumulate, zeros, (jnp.arange(num_microbatches), micro))
  denominator = jnp.maximum(count, 1.0)
  grads = jax.tree_util.tree_map(lambda g: g / denominator, grad_sum)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss_sum": total, "token_count": count,
             "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params),
             "update_norm": optax.tree.norm(updates)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def jit_train_step(model: Seq2Seq, optimizer: optax.GradientTransformation, state_shardings,
                   batch_sharding, num_microbatches: int = 1):
  """``train_step`` jitted with explicit shardings and the old state donated."""
  step = functools.partial(train_step, model=model, optimizer=optimizer,
                           num_microbatches=num_microbatches)
  replicated = partitioning.replicated(batch_sharding.mesh)
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=(0,))
