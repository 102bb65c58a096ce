"""The post-training jobs as plain functions of their settings: what ``python -m
meena_jax.posttrain`` binds with gin. Each reads files and checkpoints, calls the library
(``rm``, ``dpo``, ``ppo``), and writes its result as JSON next to its metrics.

Vocabulary: the run's SeqIO task's (the model's own), so preference text is tokenized the way
the model was trained. Contexts keep their most recent ``input_length`` tokens.
"""
import json
import logging
import math
from typing import Optional

import jax
import numpy as np

from meena_jax import checkpoints, input_pipeline, partitioning, storage, token_store
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq
from meena_jax.posttrain import dpo, evaluate, ppo, preference_data, rm
from meena_jax.posttrain.reward_model import RewardModel

log = logging.getLogger("meena_jax.posttrain")


def _vocabulary(task):
  return task.output_features["targets"].vocabulary


def _load(path, vocabulary, input_length, target_length, max_examples: int = 0):
  comparisons = preference_data.read_comparisons(path)
  if max_examples:
    comparisons = comparisons[:max_examples]
  arrays = preference_data.encode_comparisons(comparisons, vocabulary, input_length,
                                              target_length)
  return comparisons, arrays


def _write(run_dir, name: str, result: dict) -> dict:
  storage.write_text(storage.path(run_dir) / name, json.dumps(result, indent=2) + "\n")
  return result


def _with_eval(result: dict, records: list, eval_file: Optional[str], comparisons) -> dict:
  """``result`` plus the held-out numbers of the run's last record (its ``eval_*`` keys) and
  the "prefer the shorter answer" baseline of the same pairs."""
  if not eval_file:
    return result
  return {**result, "eval_file": eval_file,
          **{k[5:]: v for k, v in records[-1].items() if k.startswith("eval_")},
          "shorter_chars_baseline": preference_data.shorter_answer_accuracy(comparisons)}


def sft_steps(*, task, epochs: float, batch_size: int, input_length: int, target_length: int,
              data_cache_dir: str, packed_input_length: Optional[int] = None,
              packed_target_length: Optional[int] = None, packing_bins: int = 64,
              split: str = "train") -> int:
  """Steps for ``epochs`` passes over ``task``'s split as the trainer packs it: the rows one
  pass fills (``input_pipeline.epoch_rows`` over the tokenised split the trainer reads,
  built once under ``data_cache_dir``) times epochs, over the batch size."""
  lengths = {"inputs": input_length, "targets": target_length}
  rows = input_pipeline.epoch_rows(
      token_store.tokenized_sources(task, split, lengths, data_cache_dir),
      {"inputs": packed_input_length or input_length,
       "targets": packed_target_length or target_length}, packing_bins)
  steps = max(1, math.ceil(epochs * rows / batch_size))
  log.info("%s epochs of %d packed rows at batch %d: %d steps", epochs, rows, batch_size, steps)
  return steps


def train_reward_model(*, model_config: ModelConfig, task, train_file: str, run_dir: str,
                       eval_file: Optional[str] = None, init_checkpoint: Optional[str] = None,
                       input_length: int = 128, target_length: int = 128,
                       batch_size: int = 32, epochs: int = 1, learning_rate: float = 1e-4,
                       seed: int = 0, mesh_data: int = -1, mesh_model: int = 1,
                       max_examples: int = 0) -> dict:
  """Reward model from ``init_checkpoint`` (an SFT or pretraining run) on ``train_file``;
  held-out accuracy on ``eval_file`` next to both length baselines -> ``run_dir/rm_eval.json``."""
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  with partitioning.activate(mesh):  # The mesh and axis rules for every program.
    vocabulary = _vocabulary(task)
    _, train_data = _load(train_file, vocabulary, input_length, target_length, max_examples)
    backbone = (checkpoints.load_params(init_checkpoint, Seq2Seq(model_config), mesh)
                if init_checkpoint else None)
    eval_comparisons, eval_data = None, None
    if eval_file:
      eval_comparisons, eval_data = _load(eval_file, vocabulary, input_length, target_length)
    _, records = rm.train(model_config=model_config, train_data=train_data, run_dir=run_dir,
                          mesh=mesh, backbone=backbone, eval_data=eval_data,
                          batch_size=batch_size, epochs=epochs, learning_rate=learning_rate,
                          seed=seed)
    result = {"train_file": train_file, "init_checkpoint": init_checkpoint,
              "train_accuracy_last_window": records[-2 if eval_file else -1]["accuracy"]}
    return _write(run_dir, "rm_eval.json", _with_eval(result, records, eval_file,
                                                      eval_comparisons))


def evaluate_reward_model(*, model_config: ModelConfig, task, checkpoint: str, eval_file: str,
                          input_length: int = 128, target_length: int = 128,
                          batch_size: int = 32, mesh_data: int = -1,
                          mesh_model: int = 1) -> dict:
  """Pairwise accuracy of a reward-model checkpoint on ``eval_file`` with the "prefer the
  shorter answer" baselines (characters and tokens) of the same pairs."""
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  with partitioning.activate(mesh):  # The mesh and axis rules for every program.
    comparisons, data = _load(eval_file, _vocabulary(task), input_length, target_length)
    model = RewardModel(model_config)
    params = checkpoints.load_params(checkpoint, model, mesh)
    result = rm.pairwise_accuracy(rm.score(model, params, data, mesh, batch_size), data)
    return {"checkpoint": checkpoint, "eval_file": eval_file, **result,
            "shorter_chars_baseline": preference_data.shorter_answer_accuracy(comparisons)}


def train_dpo(*, model_config: ModelConfig, task, train_file: str, run_dir: str,
              init_checkpoint: str, eval_file: Optional[str] = None, beta: float = 0.1,
              input_length: int = 128, target_length: int = 128, batch_size: int = 32,
              epochs: int = 1, learning_rate: float = 1e-5, seed: int = 0,
              mesh_data: int = -1, mesh_model: int = 1, max_examples: int = 0) -> dict:
  """DPO from ``init_checkpoint`` (also the frozen reference) -> ``run_dir/dpo_eval.json``."""
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  with partitioning.activate(mesh):  # The mesh and axis rules for every program.
    vocabulary = _vocabulary(task)
    _, train_data = _load(train_file, vocabulary, input_length, target_length, max_examples)
    eval_comparisons, eval_data = None, None
    if eval_file:
      eval_comparisons, eval_data = _load(eval_file, vocabulary, input_length, target_length)
    policy = checkpoints.load_params(init_checkpoint, Seq2Seq(model_config), mesh)
    _, records = dpo.train(model_config=model_config, policy_params=policy,
                           train_data=train_data, run_dir=run_dir, mesh=mesh,
                           eval_data=eval_data, beta=beta, batch_size=batch_size, epochs=epochs,
                           learning_rate=learning_rate, seed=seed)
    result = {"train_file": train_file, "init_checkpoint": init_checkpoint, "beta": beta}
    return _write(run_dir, "dpo_eval.json", _with_eval(result, records, eval_file,
                                                       eval_comparisons))


def train_ppo(*, model_config: ModelConfig, task, config: ppo.PPOConfig, prompt_file: str,
              policy_checkpoint: str, reward_checkpoint: str, run_dir: str, iterations: int,
              input_length: int = 128, ptx_batch_size: int = 8, ptx_target_length: int = 128,
              seed: int = 0, mesh_data: int = -1, mesh_model: int = 1,
              checkpoint_every: int = 10, data_cache_dir: Optional[str] = None) -> list:
  """PPO-ptx: prompts are the contexts of ``prompt_file`` (any preference file), the ptx
  batches the run's task, packed and resumed as in pretraining (tokenised once under
  ``data_cache_dir``, default ``run_dir``); the policy and its reference start from
  ``policy_checkpoint`` (SFT), the value model from ``reward_checkpoint``."""
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  with partitioning.activate(mesh):  # The mesh and axis rules for every program.
    comparisons = preference_data.read_comparisons(prompt_file)
    prompts = _prompts(comparisons, _vocabulary(task), input_length)
    policy = checkpoints.load_params(policy_checkpoint, Seq2Seq(model_config), mesh)
    reference = jax.tree_util.tree_map(lambda x: x.copy(), policy)
    reward_params = checkpoints.load_params(reward_checkpoint, RewardModel(model_config), mesh)
    value_params = jax.tree_util.tree_map(lambda x: x.copy(), reward_params)

    ptx_input = None
    if config.ptx_coef:
      lengths = {"inputs": input_length, "targets": ptx_target_length}
      ptx_input = input_pipeline.TrainInput(
          token_store.tokenized_sources(task, "train", lengths, data_cache_dir or run_dir),
          ptx_batch_size, lengths, seed=seed)
    return ppo.run(model_config=model_config, config=config, policy_params=policy,
                   reference_params=reference, value_params=value_params,
                   rm_params=reward_params, prompts=prompts, run_dir=run_dir, mesh=mesh,
                   iterations=iterations, seed=seed, ptx_input=ptx_input,
                   checkpoint_every=checkpoint_every)


def _prompts(comparisons, vocabulary, input_length: int, context_turns: int = 7) -> np.ndarray:
  """``[N, input_length]`` prompt tokens from the comparisons' contexts (PPO's rollout input)."""
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
  contexts = seqio_tasks.tokenize_contexts(
      [list(c.context)[-context_turns:] for c in comparisons], vocabulary, input_length)
  prompts = np.zeros((len(contexts), input_length), np.int32)
  for row, (ids, _) in enumerate(contexts):
    prompts[row, :len(ids)] = ids
  return prompts


def evaluate_policies(*, model_config: ModelConfig, task, policies: dict,
                      reference_checkpoint: str, reward_checkpoint: str, eval_file: str,
                      output: Optional[str] = None, input_length: int = 128,
                      target_length: int = 128, prompt_length: int = 0, num_samples: int = 4,
                      max_length: int = 32, temperature: float = 1.0, max_prompts: int = 0,
                      batch_size: int = 32, seed: int = 0, mesh_data: int = -1,
                      mesh_model: int = 1) -> dict:
  """Compares policies (``{name: checkpoint}``, PPO runs or SFT/DPO checkpoints) on
  ``eval_file``: the reward model's mean score of each policy's sampled answers to the held-out
  contexts (same keys for all), their KL to ``reference_checkpoint``, and the held-out
  preference accuracy of each policy's implicit reward ``log pi - log pi_ref`` (DPO's eval;
  beta does not change it). Writes ``output`` (JSON, with the first answer to each prompt)."""
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  with partitioning.activate(mesh):  # The mesh and axis rules for every program.
    vocabulary = _vocabulary(task)
    comparisons, data = _load(eval_file, vocabulary, input_length, target_length)
    prompts = _prompts(comparisons, vocabulary, prompt_length or input_length)
    if max_prompts:
      comparisons, prompts = comparisons[:max_prompts], prompts[:max_prompts]
    policy_model = Seq2Seq(model_config)
    reference = evaluate.load_policy(reference_checkpoint, model_config, mesh)
    rm_params = checkpoints.load_params(reward_checkpoint, RewardModel(model_config), mesh)
    data = dpo.with_reference(policy_model, reference, data, mesh, batch_size)
    result = {"eval_file": eval_file, "reference_checkpoint": reference_checkpoint,
              "reward_checkpoint": reward_checkpoint,
              "prompt_length": prompt_length or input_length,
              "max_length": max_length, "temperature": temperature, "seed": seed,
              "reward_model_accuracy": rm.pairwise_accuracy(
                  rm.score(RewardModel(model_config), rm_params, data, mesh, batch_size),
                  data)["accuracy"],
              "contexts": [list(c.context) for c in comparisons], "policies": {}}
    for name, checkpoint in policies.items():
      params = evaluate.load_policy(checkpoint, model_config, mesh)
      sampled = evaluate.sample_and_score(
          model_config, params, rm_params, prompts, mesh, reference_params=reference,
          num_samples=num_samples, max_length=max_length, temperature=temperature,
          batch_size=batch_size, seed=seed)
      implicit = dpo.implicit_rewards(policy_model, params, data, mesh, batch_size, beta=1.0)
      # The sampler never draws padding (0); EOS (1) ends an answer and 0s follow it.
      answers = [vocabulary.decode([int(t) for t in row[0] if t > 1]) for row in sampled["tokens"]]
      result["policies"][name] = {
          "checkpoint": checkpoint, **evaluate.summarize(sampled),
          "implicit_reward_accuracy": rm.pairwise_accuracy(implicit, data)["accuracy"],
          "first_answers": answers, "first_answer_rewards": sampled["rewards"][:, 0].tolist()}
      log.info("%s: %s", name, {k: v for k, v in result["policies"][name].items()
                                if not isinstance(v, list)})
    if output:
      if not storage.is_remote(output):
        storage.path(output).parent.mkdir(parents=True, exist_ok=True)
      storage.write_text(output, json.dumps(result, indent=2) + "\n")
    return result
