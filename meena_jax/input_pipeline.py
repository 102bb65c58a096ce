"""SeqIO task -> this host's numpy batches -> global arrays on the mesh.

The trainer's only view of data. Each process reads its own shard of the task
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
                 repeat: bool, skip_batches: int = 0) -> Iterator[dict]:
  """This process's numpy batches of the feature converter (packed for training)."""
  processes = jax.process_count()
  if global_batch_size % processes:
    raise ValueError(f"batch size {global_batch_size} does not divide over {processes} "
                     f"processes")
  lengths = {"inputs": input_length, "targets": target_length}
  dataset = task.get_dataset(
      lengths, split=split, shuffle=shuffle, seed=seed,
      shard_info=seqio.ShardInfo(index=jax.process_index(), num_shards=processes))
  dataset = seqio.EncDecFeatureConverter(pack=pack)(dataset, lengths)
  if repeat:
    dataset = dataset.repeat()
  dataset = dataset.batch(global_batch_size // processes, drop_remainder=repeat)
  batches = dataset.as_numpy_iterator()
  return itertools.islice(batches, skip_batches, None)


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
