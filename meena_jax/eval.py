"""Perplexity of a checkpoint on a task's split or on any conversation JSONL file.

  python -m meena_jax eval --gin_file=gin/runs/et_tiny_chitchat.gin --gin.CHECKPOINT=runs/demo
  python -m meena_jax eval --gin_file=gin/runs/et_tiny_reddit2015.gin \
      --gin.CHECKPOINT=runs/r15 --jsonl=my_conversations.jsonl --output=result.json

Every example counts once: batches are unpacked, the last one is padded with zero-weight rows,
and padding is excluded, so perplexity is ``exp(total NLL / target tokens)`` over the split (the
trainer's ``eval_every`` calls the same ``evaluate``). Word perplexity divides the same NLL by
the number of words (whitespace-separated, after detokenising each trimmed target) plus one end
of turn per example, so models with different vocabularies compare.
"""
import json
import logging
import math
import os
import sys
import time
from typing import Optional

import jax
import numpy as np
import seqio
import tqdm
from jax.experimental import multihost_utils

from meena_jax import checkpoints, input_pipeline, partitioning, storage
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq, loss_fn, model_inputs

log = logging.getLogger("meena_jax.eval")


def host_eval_batches(task: seqio.Task, split: str, batch_size: int, input_length: int,
                      target_length: int) -> list[dict]:
  """This process's unpacked batches of ``split``, all of ``batch_size // processes`` rows (the
  last one padded with zero rows), and as many on every process, so hosts step together."""
  batches = list(input_pipeline.host_batches(
      task, split, batch_size, input_length, target_length, pack=False, shuffle=False,
      seed=None, repeat=False))
  if not batches:
    raise ValueError(f"task {task.name!r} split {split!r} has no examples")
  rows = batch_size // jax.process_count()
  count = len(batches)
  if jax.process_count() > 1:
    count = int(np.max(multihost_utils.process_allgather(np.int32(count))))
  template = {k: np.zeros((rows,) + v.shape[1:], v.dtype) for k, v in batches[0].items()}
  padded = []
  for i in range(count):
    batch = batches[i] if i < len(batches) else template
    missing = rows - len(next(iter(batch.values())))
    if missing:
      batch = {k: np.concatenate([v, template[k][:missing]]) for k, v in batch.items()}
    padded.append(batch)
  return padded


def make_score_fn(model: Seq2Seq, params_shardings, mesh):
  """jitted ``(params, batch) -> (summed target NLL, target tokens)`` on ``mesh``."""
  def score(params, batch):
    logits = model.apply({"params": params}, **model_inputs(batch), deterministic=True)
    return loss_fn(logits, batch["decoder_target_tokens"], batch.get("decoder_loss_weights"))
  replicated = partitioning.replicated(mesh)
  return jax.jit(score, in_shardings=(params_shardings, partitioning.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated))


def count_words(targets: np.ndarray, vocabulary: seqio.SentencePieceVocabulary) -> int:
  """Words in a batch of target rows (EOS and padding dropped) plus one end of turn a row."""
  rows = [[int(t) for t in row if t > 1] for row in targets if row.max() > 0]  # 0 pad, 1 EOS.
  texts = vocabulary.tokenizer.decode(rows) if rows else []
  return sum(len(text.split()) + 1 for text in texts)


def evaluate(score_fn, params, batches: list[dict], mesh,
             vocabulary: Optional[seqio.Vocabulary] = None, progress: bool = False) -> dict:
  """Token-weighted loss and perplexity over ``batches`` (``host_eval_batches``); with a
  vocabulary also word perplexity. Sums cross hosts, so every process returns the same."""
  started = time.perf_counter()
  nll, tokens, words, examples = 0.0, 0.0, 0, 0
  for batch in tqdm.tqdm(batches, desc="eval", unit="batch", disable=not progress,
                         dynamic_ncols=True):
    total, count = score_fn(params, input_pipeline.to_global(batch, mesh))
    nll, tokens = nll + float(total), tokens + float(count)
    targets = batch["decoder_target_tokens"]
    examples += int(np.sum(targets.max(axis=1) > 0))
    if vocabulary is not None:
      words += count_words(targets, vocabulary)
  if jax.process_count() > 1:  # nll and tokens are global already; the host counts are not.
    examples, words = (int(x) for x in np.sum(multihost_utils.process_allgather(
        np.array([examples, words], np.int64)), axis=0))
  loss = nll / max(tokens, 1.0)
  result = {"examples": examples, "target_tokens": int(tokens), "nll_sum": nll,
            "loss": loss, "perplexity": math.exp(min(loss, 50.0)),
            "seconds": time.perf_counter() - started}
  if vocabulary is not None:
    result["words"] = words
    result["word_perplexity"] = math.exp(min(nll / max(words, 1), 50.0))
  return result


def unigram_perplexity(train_batches, eval_batches, vocab_size: int) -> float:
  """Perplexity of the add-one-smoothed unigram model of the training targets on the eval
  targets: the bar a trained model must clear to have learned more than word frequencies."""
  counts = np.ones(vocab_size, np.float64)
  for batch in train_batches:
    targets = batch["decoder_target_tokens"]
    counts += np.bincount(targets[targets > 0], minlength=vocab_size)[:vocab_size]
  log_probs = np.log(counts / counts.sum())
  nll, tokens = 0.0, 0
  for batch in eval_batches:
    targets = batch["decoder_target_tokens"]
    nll -= float(log_probs[targets[targets > 0]].sum())
    tokens += int((targets > 0).sum())
  return math.exp(nll / max(tokens, 1))


def evaluate_checkpoint(*, model_config: ModelConfig, task: seqio.Task, checkpoint: str,
                        split: str = "validation", batch_size: int = 32,
                        input_length: int = 128, target_length: int = 128,
                        mesh_data: int = -1, mesh_model: int = 1,
                        data_dir: str = "~/tensorflow_datasets", jsonl: Optional[str] = None,
                        output: Optional[str] = None, unigram: bool = False,
                        progress: bool = True, checkpoint_subtree: str = "") -> dict:
  """Loads ``checkpoint``'s parameters (of the train state at ``checkpoint_subtree``: ``policy``
  for a PPO run) and evaluates them on ``task``'s ``split``, or on the
  conversation file ``jsonl`` (tokenised with the task's vocabulary). Writes the result as
  JSON to ``output`` (default ``<checkpoint run>/eval_<split or file>.json``). ``unigram``
  adds the perplexity of the training split's unigram model on the same targets."""
  vocabulary = task.output_features["targets"].vocabulary
  train_task = task
  if jsonl:
    from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
    task, split = seqio_tasks.jsonl_task(jsonl, vocabulary.sentencepiece_model_file,
                                         data_dir), "test"
  if split not in task.splits:
    raise ValueError(f"task {task.name!r} has no split {split!r}; it has {list(task.splits)}")
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  model = Seq2Seq(model_config)
  params, step = checkpoints.load(checkpoint, model, mesh, checkpoint_subtree)
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, params)
  score_fn = make_score_fn(model, shardings, mesh)
  batches = host_eval_batches(task, split, batch_size, input_length, target_length)
  with partitioning.activate(mesh):  # The mesh and axis rules for the activation constraints.
    result = evaluate(score_fn, params, batches, mesh, vocabulary, progress)
  result = {"checkpoint": str(checkpoint), "step": step,
            "task": task.name, "split": split, **({"jsonl": str(jsonl)} if jsonl else {}),
            **result}
  if unigram:
    result["unigram_perplexity"] = unigram_perplexity(
        input_pipeline.host_batches(train_task, "train", batch_size, input_length,
                                    target_length, pack=False, shuffle=False, seed=None,
                                    repeat=False),
        batches, model_config.vocab_size)
  if output is None:
    run_dir = checkpoints.find_state_dir(checkpoint).parent.parent.parent
    name = os.path.splitext(os.path.basename(jsonl))[0] if jsonl else split
    output = run_dir / f"eval_{name}.json"
  if jax.process_index() == 0:
    storage.write_text(output, json.dumps(result, indent=2) + "\n")
  result["output"] = os.fspath(output)
  return result


if __name__ == "__main__":  # python -m meena_jax eval: an alias of the edge.
  from meena_jax import commands  # pylint: disable=import-outside-toplevel
  commands.main(["eval", *sys.argv[1:]])
