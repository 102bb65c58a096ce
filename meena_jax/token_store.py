"""A split of a SeqIO task, tokenised once into flat arrays that any example can be read from.

Training reads examples by index (``input_pipeline``): a shuffled epoch is a permutation, and
an input position is a few integers, so a resumed run seeks instead of replaying every batch
since step 0. The examples are the task's own (its preprocessors: turns joined, tokenised, the
context cut to its most recent ``inputs`` tokens, EOS after the trimmed response), read once
in file order and stored as ``<feature>.tokens.npy`` (all tokens, int32) and
``<feature>.offsets.npy`` (example ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``). Local files
are memory-mapped; other paths (``gs://``) are read whole.

SeqIO's own cache (``seqio.CacheDatasetPlaceholder`` + ``cache_tasks_main``) writes TFRecords,
which are read in order, not by index; ArrayRecord would serve indices too, but a record per
example buys nothing over two arrays for int32 token lists. At Meena's corpus size this build
is a Beam job's work; here it is one pass (tens of seconds for chitchat, minutes for
reddit2015), done once per (task, split, cut lengths, vocabulary).
"""
import dataclasses
import hashlib
import io
import logging
import os
import uuid

import numpy as np
import seqio
import tensorflow as tf
import tqdm

log = logging.getLogger("meena_jax.token_store")
FEATURES = ("inputs", "targets")


class CacheDirError(ValueError):
  """The store is missing and its directory cannot be written; names the setting."""


@dataclasses.dataclass(frozen=True)
class TokenStore:
  """Random access to tokenised examples: ``store[i] == {"inputs": ..., "targets": ...}``."""
  tokens: dict   # feature -> int32 array of every example's tokens, concatenated.
  offsets: dict  # feature -> int64 array of len(store) + 1 boundaries.
  path: str

  def __len__(self) -> int:
    return len(self.offsets["inputs"]) - 1

  def __getitem__(self, index: int) -> dict:
    return {f: np.asarray(self.tokens[f][self.offsets[f][index]:self.offsets[f][index + 1]])
            for f in FEATURES}

  def lengths(self, feature: str) -> np.ndarray:
    return np.diff(self.offsets[feature])


def store_dir(cache_dir: str, task: seqio.Task, split: str, lengths: dict) -> str:
  """Where ``task``'s ``split`` cut to ``lengths`` is stored: named by the task, split, cut
  lengths and a hash of the vocabulary, so a retrained vocabulary never reads stale tokens."""
  vocabulary = task.output_features["targets"].vocabulary
  model = getattr(vocabulary, "sp_model", None) or repr(vocabulary).encode()
  digest = hashlib.sha256(model).hexdigest()[:12]
  return os.path.join(os.path.expanduser(cache_dir), "meena_jax_tokenized", task.name,
                      f"{split}-inputs{lengths['inputs']}-targets{lengths['targets']}-{digest}")


def tokenized(task: seqio.Task, split: str, lengths: dict, cache_dir: str,
              progress: bool = True) -> TokenStore:
  """The store of ``task``'s ``split`` under ``cache_dir``, built first if missing."""
  path = store_dir(cache_dir, task, split, lengths)
  if not tf.io.gfile.exists(os.path.join(path, "targets.offsets.npy")):
    _build(task, split, lengths, path, progress)
  return load(path)


def tokenized_sources(task, split: str, lengths: dict, cache_dir: str,
                      progress: bool = True) -> list:
  """``[(store, rate)]``: one for a ``seqio.Task``, one per task of a ``seqio.Mixture`` with
  the mixture's rate (the stores are mixed by index, see ``input_pipeline.TrainInput``)."""
  if isinstance(task, seqio.Mixture):
    return [(tokenized(sub, split, lengths, cache_dir, progress), task.get_rate(sub))
            for sub in task.tasks]
  return [(tokenized(task, split, lengths, cache_dir, progress), 1.0)]


def load(path: str) -> TokenStore:
  local = "://" not in path
  arrays = {}
  for name in (f"{f}.{kind}" for f in FEATURES for kind in ("tokens", "offsets")):
    file = os.path.join(path, f"{name}.npy")
    if local:
      arrays[name] = np.load(file, mmap_mode="r")
    else:
      with tf.io.gfile.GFile(file, "rb") as f:
        arrays[name] = np.load(io.BytesIO(f.read()))
  return TokenStore({f: arrays[f"{f}.tokens"] for f in FEATURES},
                    {f: arrays[f"{f}.offsets"] for f in FEATURES}, path)


def _build(task: seqio.Task, split: str, lengths: dict, path: str, progress: bool):
  """One pass over the task's examples in file order; written to a temporary directory that
  is renamed into place, so a crash leaves no half-made store (and concurrent builders on
  several hosts each finish whole; the first rename wins)."""
  log.info("tokenising %s/%s once into %s", task.name, split, path)
  dataset = task.get_dataset(lengths, split=split, shuffle=False, use_cached=False)
  parts = {f: [] for f in FEATURES}
  for example in tqdm.tqdm(dataset.as_numpy_iterator(), desc=f"tokenise {task.name}/{split}",
                           unit=" examples", disable=not progress, mininterval=2.0):
    for f in FEATURES:
      parts[f].append(np.asarray(example[f], np.int32))
  if not parts["targets"]:
    raise ValueError(f"task {task.name!r} split {split!r} has no examples to train on")
  staging = f"{path}.incomplete-{uuid.uuid4().hex[:8]}"
  try:
    tf.io.gfile.makedirs(staging)
  except (tf.errors.OpError, OSError) as error:
    raise CacheDirError(
        f"train.data_cache_dir: cannot write the tokenised {task.name}/{split} under "
        f"{os.path.dirname(os.path.dirname(path))} ({getattr(error, 'message', error)}); pass "
        f"--gin.train.data_cache_dir=<a writable directory>") from None
  for f in FEATURES:
    offsets = np.zeros(len(parts[f]) + 1, np.int64)
    np.cumsum([len(p) for p in parts[f]], out=offsets[1:])
    _write(os.path.join(staging, f"{f}.tokens.npy"), np.concatenate(parts[f]))
    _write(os.path.join(staging, f"{f}.offsets.npy"), offsets)
  try:
    tf.io.gfile.rename(staging, path)
  except tf.errors.OpError:  # Another host renamed its identical store first.
    tf.io.gfile.rmtree(staging)
    if not tf.io.gfile.exists(os.path.join(path, "targets.offsets.npy")):
      raise


def _write(file: str, array: np.ndarray):
  buffer = io.BytesIO()
  np.save(buffer, array)
  with tf.io.gfile.GFile(file, "wb") as f:
    f.write(buffer.getvalue())
