"""PPO with a KL penalty and a pretraining mix (InstructGPT's PPO-ptx), on the training mesh.

One iteration:
  1. rollout: the policy answers a batch of prompts with the jitted sampler of ``decoding.py``
     (one sample per prompt at temperature 1, so the samples are the policy's own);
  2. scoring (one jitted call): per-token log-probs and entropies under the policy and the frozen
     reference, values, the reward model's score at EOS, the reward
     ``score (at the last token) - beta * (log pi - log pi_ref)`` per token, GAE (rlax);
  3. update (one jitted ``lax.scan``): ``epochs`` passes over ``minibatches`` random minibatches
     of the rollout; the policy minimises the clipped surrogate plus ``ptx_coef`` times the LM
     loss of a pretraining batch, the value model the clipped value loss, each with its own Adam.
The value model is a ``RewardModel`` started from the reward model's weights. The trainer's
loop (``loop.py``) runs the iterations and checkpoints the state (both models and their
optimizers) with the pretraining input's position; prompts and keys derive from the seed and
the iteration, so a resumed run continues exactly.
"""
import dataclasses
import functools
import time
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meena_jax import decoding, input_pipeline, loop, partitioning, storage
from meena_jax import state as state_lib
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq, loss_fn, model_inputs
from meena_jax.posttrain import losses, preference_training, reward_model
from meena_jax.posttrain.reward_model import RewardModel
from meena_jax.state import TrainState


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """PPO-ptx settings (gin binds them in ``gin/posttrain/ppo_*.gin``).

  Attributes:
    beta: KL penalty per token (InstructGPT: 0.02).
    ptx_coef: weight ``gamma`` of the pretraining LM loss (InstructGPT: 27.8; 0 is plain PPO).
    clip: the surrogate's ratio clip epsilon; value_clip: the value loss's.
    gae_lambda / discount: GAE's lambda and gamma (InstructGPT-style bandit: gamma 1).
    epochs / minibatches: passes over a rollout batch and minibatches per pass.
    rollout_batch: prompts answered per iteration; max_length: response tokens, EOS included.
    temperature: sampling temperature of rollouts (1: the policy's own distribution).
    policy_learning_rate / value_learning_rate: Adam, cosine-decayed over the run.
  """
  beta: float = 0.02
  ptx_coef: float = 0.0
  clip: float = 0.2
  value_clip: float = 0.2
  gae_lambda: float = 0.95
  discount: float = 1.0
  epochs: int = 4
  minibatches: int = 4
  rollout_batch: int = 64
  max_length: int = 32
  temperature: float = 1.0
  policy_learning_rate: float = 1e-5
  value_learning_rate: float = 1e-5
  whiten_advantages: bool = True

  def __post_init__(self):
    if self.rollout_batch % self.minibatches:
      raise ValueError(f"PPOConfig.rollout_batch={self.rollout_batch}: must divide into "
                       f"PPOConfig.minibatches={self.minibatches}")
    for field in ("epochs", "minibatches", "rollout_batch", "max_length"):
      if getattr(self, field) < 1:
        raise ValueError(f"PPOConfig.{field}={getattr(self, field)}: must be >= 1")


# Where the policy's train state sits in a PPO checkpoint (``checkpoints.load_params``'s subtree).
POLICY = "policy"


@flax.struct.dataclass
class PPOState:
  """What a resumed run needs: the iteration, and policy and value models with their Adam."""
  iteration: jax.Array
  policy: TrainState
  value: TrainState


@dataclasses.dataclass
class Models:
  """The four networks: the policy and its frozen reference share ``policy``; the value model
  and the frozen reward model share ``value``."""
  policy: Seq2Seq
  value: RewardModel


def score_rollout(models: Models, policy_params, reference_params, value_params, rm_params,
                  prompts, tokens, config: PPOConfig) -> dict:
  """Everything the update needs about ``[B, T]`` sampled ``tokens`` for ``[B, s]`` prompts."""
  mask = reward_model.response_mask(tokens)
  log_probs, entropy = reward_model.sequence_log_probs(models.policy, policy_params, prompts,
                                                       tokens)
  reference_log_probs, _ = reward_model.sequence_log_probs(models.policy, reference_params,
                                                           prompts, tokens)
  values = reward_model.values(models.value, value_params, prompts, tokens) * mask
  score = reward_model.reward(models.value, rm_params, prompts, tokens)
  rewards, kl = losses.kl_penalised_rewards(score, log_probs, reference_log_probs, mask,
                                            config.beta)
  advantages, returns = losses.gae(rewards, values, mask, config.discount, config.gae_lambda)
  if config.whiten_advantages:
    advantages = losses.whiten(advantages, mask)
  return {"prompts": prompts, "tokens": tokens, "mask": mask, "log_probs": log_probs,
          "reference_log_probs": reference_log_probs, "values": values,
          "advantages": advantages, "returns": returns, "score": score, "kl": kl,
          "entropy": entropy}


def _ptx_loss(model: Seq2Seq, params, batch):
  """Token-mean LM loss of a pretraining batch (the trainer's ``loss_fn``)."""
  logits = model.apply({"params": params}, **model_inputs(batch))
  total, count = loss_fn(logits, batch["decoder_target_tokens"],
                         batch.get("decoder_loss_weights"))
  return total / jnp.maximum(count, 1.0)


def update(state: PPOState, rollout: dict, ptx_batches, key, *, models: Models,
           config: PPOConfig, policy_optimizer, value_optimizer):
  """``epochs x minibatches`` PPO steps on one scored rollout (and one pretraining batch per
  step, stacked on a leading axis, or None); returns the new state and mean metrics."""
  rows = rollout["tokens"].shape[0]
  size = rows // config.minibatches
  index = jnp.concatenate([jax.random.permutation(jax.random.fold_in(key, e), rows)
                           for e in range(config.epochs)]).reshape(-1, size)

  def step(state: PPOState, inputs):
    rows_index, ptx = inputs
    mini = jax.tree_util.tree_map(lambda x: x[rows_index], rollout)

    def policy_loss(params):
      log_probs, entropy = reward_model.sequence_log_probs(models.policy, params,
                                                           mini["prompts"], mini["tokens"])
      pg, clip_fraction = losses.clipped_policy_loss(
          log_probs, mini["log_probs"], mini["advantages"], mini["mask"], config.clip)
      ptx_loss = _ptx_loss(models.policy, params, ptx) if ptx is not None else jnp.zeros(())
      return pg + config.ptx_coef * ptx_loss, {
          "policy_loss": pg, "clip_fraction": clip_fraction, "ptx_loss": ptx_loss,
          "approx_kl_old": losses.masked_mean(mini["log_probs"] - log_probs, mini["mask"])}

    def value_loss(params):
      values = reward_model.values(models.value, params, mini["prompts"], mini["tokens"])
      loss, clip_fraction = losses.clipped_value_loss(
          values, mini["values"], mini["returns"], mini["mask"], config.value_clip)
      return loss, {"value_loss": loss, "value_clip_fraction": clip_fraction}

    new = {}
    metrics = {}
    for name, fn, optimizer in (("policy", policy_loss, policy_optimizer),
                                ("value", value_loss, value_optimizer)):
      train = getattr(state, name)
      (_, aux), grads = jax.value_and_grad(fn, has_aux=True)(train.params)
      updates, opt_state = optimizer.update(grads, train.opt_state, train.params)
      new[name] = train.replace(step=train.step + 1, opt_state=opt_state,
                                params=optax.apply_updates(train.params, updates))
      metrics.update(aux, **{f"{name}_grad_norm": optax.tree.norm(grads)})
    return state.replace(**new), metrics

  state, metrics = jax.lax.scan(step, state, (index, ptx_batches))
  return (state.replace(iteration=state.iteration + 1),
          jax.tree_util.tree_map(jnp.mean, metrics))


def summarize(rollout: dict, beta: float) -> dict:
  """Per-iteration rollout metrics (means over the batch): RM score, KL to the reference
  (summed over a response), entropy per token, response length."""
  mask = rollout["mask"]
  kl = jnp.sum(rollout["kl"], axis=-1)
  return {"reward": jnp.mean(rollout["score"]), "kl": jnp.mean(kl),
          "reward_with_penalty": jnp.mean(rollout["score"] - beta * kl),
          "entropy": losses.masked_mean(rollout["entropy"], mask),
          "response_length": jnp.mean(jnp.sum(mask, axis=-1)),
          "value_mean": losses.masked_mean(rollout["values"], mask),
          "return_mean": losses.masked_mean(rollout["returns"], mask)}


class Trainer:
  """Compiled rollout, scoring and update for a fixed mesh and configuration."""

  def __init__(self, model_config: ModelConfig, config: PPOConfig, mesh, iterations: int):
    self.config, self.mesh = config, mesh
    self.models = Models(Seq2Seq(model_config), RewardModel(model_config))
    updates = iterations * config.epochs * config.minibatches
    self.policy_optimizer = preference_training.adam(config.policy_learning_rate, updates)
    self.value_optimizer = preference_training.adam(config.value_learning_rate, updates)
    self.sample = decoding.sampler(self.models.policy, decoding.DecodingConfig(
        num_samples=1, temperature=config.temperature, max_length=config.max_length,
        repetition_ngram=0), mesh)
    self.score = jax.jit(functools.partial(score_rollout, self.models, config=config))
    self.summarize = jax.jit(functools.partial(summarize, beta=config.beta))

  def abstract_state(self) -> PPOState:
    """Shapes and shardings of the state: two ``state.abstract_state``s and the counter."""
    return PPOState(
        iteration=jax.ShapeDtypeStruct((), jnp.int32,
                                       sharding=partitioning.replicated(self.mesh)),
        policy=state_lib.abstract_state(state_lib.abstract_params(self.models.policy, self.mesh),
                                        self.policy_optimizer),
        value=state_lib.abstract_state(state_lib.abstract_params(self.models.value, self.mesh),
                                       self.value_optimizer))

  def init_state(self, policy_params, value_params) -> PPOState:
    """Iteration 0: the policy from ``policy_params`` (SFT), the value model from
    ``value_params`` (the reward model's), fresh optimizers."""
    abstract = self.abstract_state()
    return PPOState(
        iteration=jax.device_put(jnp.zeros((), jnp.int32), abstract.iteration.sharding),
        policy=state_lib.state_from_params(policy_params, self.policy_optimizer, abstract.policy),
        value=state_lib.state_from_params(value_params, self.value_optimizer, abstract.value))

  def compile_update(self):
    shardings = state_lib.shardings(self.abstract_state())
    fn = functools.partial(update, models=self.models, config=self.config,
                           policy_optimizer=self.policy_optimizer,
                           value_optimizer=self.value_optimizer)
    return jax.jit(fn, in_shardings=(shardings, None, None, None),
                   out_shardings=(shardings, partitioning.replicated(self.mesh)),
                   donate_argnums=(0,))


def run(*, model_config: ModelConfig, config: PPOConfig, policy_params, reference_params,
        value_params, rm_params, prompts: np.ndarray, run_dir, mesh, iterations: int,
        seed: int = 0, ptx_input=None, checkpoint_every: int = 10, keep_checkpoints: int = 2,
        on_record: Optional[Callable[[dict], None]] = None, progress: bool = True) -> list:
  """PPO-ptx for ``iterations`` iterations over ``prompts`` (``[N, s]`` context tokens);
  returns the per-iteration records, also written to ``run_dir/metrics.jsonl`` and TensorBoard.

  ``ptx_input``: pretraining batches (an ``input_pipeline.TrainInput``: one batch per update
  step, its position saved with each checkpoint; None: no ptx term). Resumes from the newest
  checkpoint in ``run_dir``; ``on_record`` sees each iteration's record.
  """
  trainer = Trainer(model_config, config, mesh, iterations)
  manager, state, position = loop.start(
      run_dir, trainer.abstract_state(),
      lambda: trainer.init_state(policy_params, value_params), keep_checkpoints)
  start = int(state.iteration)
  steps_per_iteration = config.epochs * config.minibatches
  if ptx_input is not None:
    loop.continue_input(ptx_input, position, start, steps_per_iteration)
  update_fn = trainer.compile_update()
  rollout_key, update_key = jax.random.split(jax.random.key(seed))

  def step(state, number):
    iteration = number - 1
    started = time.perf_counter()
    chosen = np.random.default_rng([seed, iteration]).choice(
        len(prompts), config.rollout_batch, replace=len(prompts) < config.rollout_batch)
    batch = input_pipeline.to_global({"prompts": prompts[chosen]}, mesh)["prompts"]
    tokens = trainer.sample(state.policy.params, batch,
                            jax.random.fold_in(rollout_key, iteration)).tokens[:, 0]
    tokens.block_until_ready()
    rollout_s = time.perf_counter() - started
    rollout = trainer.score(state.policy.params, reference_params, state.value.params,
                            rm_params, batch, tokens)
    summary = trainer.summarize(rollout)
    jax.block_until_ready(summary)
    score_s = time.perf_counter() - started - rollout_s
    ptx_stack = None
    if ptx_input is not None:
      parts = [next(ptx_input) for _ in range(steps_per_iteration)]
      ptx_stack = {k: np.stack([p[k] for p in parts]) for k in parts[0]}
    state, metrics = update_fn(state, rollout, ptx_stack,
                               jax.random.fold_in(update_key, iteration))
    jax.block_until_ready(metrics)
    update_s = time.perf_counter() - started - rollout_s - score_s
    return state, {**summary, **metrics, "rollout_s": rollout_s, "score_s": score_s,
                   "update_s": update_s}

  def position(number):
    saved = {"iteration": number, "seed": seed}
    return {**saved, "input": ptx_input.state()} if ptx_input is not None else saved

  _, records = loop.run(
      step, state, first_step=start, manager=manager, run_dir=run_dir,
      cadence=loop.Cadence(iterations, log_every=1, checkpoint_every=checkpoint_every,
                           keep_checkpoints=keep_checkpoints),
      summarize=lambda number, sums, steps, seconds: {k: v / steps for k, v in sums.items()},
      position=position, on_record=on_record, progress=progress,
      description=storage.path(run_dir).name, shown=("reward", "kl", "value_loss"))
  return records
