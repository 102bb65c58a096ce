"""SeqIO task -> this host's numpy batches -> global arrays on the mesh.

The trainer's only view of data. Each process reads its own shards of the task
(``seqio.ShardInfo``) and builds ``global_batch / process_count`` rows; ``to_global`` assembles
the per-host pieces into one batch sharded along ``data``. Iteration is deterministic for a seed,
so a resumed run skips the batches it already consumed and sees exactly what it would have.
"""
import itertools
from typing import Iterator, Optional

import jax
import numpy as np
import seqio

from meena_jax import partitioning


def host_batches(task: seqio.Task, split: str, global_batch_size: int, input_length: int,
                 target_length: int, *, pack: bool, shuffle: bool, seed: Optional[int],
                 repeat: bool, skip_batches: int = 0,
                 input_shards: Optional[int] = None) -> Iterator[dict]:
  """This process's numpy batches of the feature converter (packed for training).

  The task is read as ``input_shards`` shards (default: one per process); every global batch
  is shard 0's rows, then shard 1's, ... Each process reads only the shards whose rows it
  feeds, so the global batches depend on ``input_shards`` and not on how many processes read
  them: a one-process run with ``input_shards=2`` sees what two processes see.
  """
  processes, index = jax.process_count(), jax.process_index()
  shards = input_shards or processes
  if shards % processes:
    raise ValueError(f"input_shards={shards} does not divide over {processes} processes")
  if global_batch_size % shards:
    raise ValueError(f"batch size {global_batch_size} does not divide over {shards} input "
                     f"shards ({processes} processes)")
  lengths = {"inputs": input_length, "targets": target_length}
  per_process = shards // processes
  if per_process > 1 and not repeat:
    raise ValueError("several input shards per process need repeat=True (training input)")

  def shard_batches(shard: int):
    dataset = task.get_dataset(lengths, split=split, shuffle=shuffle, seed=seed,
                               shard_info=seqio.ShardInfo(index=shard, num_shards=shards))
    dataset = seqio.EncDecFeatureConverter(pack=pack)(dataset, lengths)
    if repeat:
      dataset = dataset.repeat()
    dataset = dataset.batch(global_batch_size // shards, drop_remainder=repeat)
    return dataset.as_numpy_iterator()

  iterators = [shard_batches(s) for s in range(index * per_process, (index + 1) * per_process)]
  batches = iterators[0] if per_process == 1 else (
      {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
      for parts in zip(*iterators))
  return itertools.islice(batches, skip_batches, None)


def abstract_batch(global_batch_size: int, input_length: int, target_length: int, *,
                   pack: bool, mesh) -> dict:
  """A global batch as ``ShapeDtypeStruct``s split along ``data``: the features and lengths
  SeqIO's ``EncDecFeatureConverter`` gives (all int32), without reading any data."""
  lengths = seqio.EncDecFeatureConverter(pack=pack).get_model_feature_lengths(
      {"inputs": input_length, "targets": target_length})
  sharding = partitioning.batch_sharding(mesh)
  return {name: jax.ShapeDtypeStruct((global_batch_size, length), np.int32, sharding=sharding)
          for name, length in lengths.items()}


def to_global(host_batch: dict, mesh) -> dict:
  """Per-host numpy rows -> global ``jax.Array``s split along ``data``; errors give sizes."""
  sharding = partitioning.batch_sharding(mesh)
  data_size = mesh.shape["data"]
  rows = next(iter(host_batch.values())).shape[0]
  global_rows = rows * jax.process_count()
  if global_rows % data_size:
    raise ValueError(f"global batch {global_rows} ({rows} per host x {jax.process_count()} "
                     f"hosts) does not divide over the mesh's data axis of {data_size} devices")
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in host_batch.items()}
