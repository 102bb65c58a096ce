"""SeqIO task -> this host's numpy batches -> global arrays on the mesh.

The trainer's only view of data. Training (``TrainInput``) reads the task's tokenised
examples by index (``token_store``), each input shard a reshuffled-every-epoch permutation of
its examples, packed first-fit (grain) into rows of ``row_lengths`` that hold several cut
contexts and responses each. Its position is a few integers per shard (``state``), saved with
every checkpoint and restored in constant time. Evaluation (``host_batches``) reads SeqIO's
unpacked batches in order. Each process builds ``global_batch / process_count`` rows of its own
shards; ``to_global`` assembles them into one batch sharded along ``data``.
"""
import itertools
import json
from typing import Iterator, Optional

import grain
import grain.experimental
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
  own = _shards_of_this_process(global_batch_size, input_shards)
  shards = input_shards or jax.process_count()
  lengths = {"inputs": input_length, "targets": target_length}
  if len(own) > 1 and not repeat:
    raise ValueError("several input shards per process need repeat=True (training input)")

  def shard_batches(shard: int):
    dataset = task.get_dataset(lengths, split=split, shuffle=shuffle, seed=seed,
                               shard_info=seqio.ShardInfo(index=shard, num_shards=shards))
    dataset = seqio.EncDecFeatureConverter(pack=pack)(dataset, lengths)
    if repeat:
      dataset = dataset.repeat()
    dataset = dataset.batch(global_batch_size // shards, drop_remainder=repeat)
    return dataset.as_numpy_iterator()

  iterators = [shard_batches(s) for s in own]
  batches = iterators[0] if len(own) == 1 else (
      {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
      for parts in zip(*iterators))
  return itertools.islice(batches, skip_batches, None)


class InputConfigError(ValueError):
  """The run's input settings cannot work (one line, naming the setting)."""


def _shards_of_this_process(global_batch_size: int, input_shards: Optional[int]) -> range:
  processes, index = jax.process_count(), jax.process_index()
  shards = input_shards or processes
  if shards % processes:
    raise ValueError(f"input_shards={shards} does not divide over {processes} processes")
  if global_batch_size % shards:
    raise ValueError(f"batch size {global_batch_size} does not divide over {shards} input "
                     f"shards ({processes} processes)")
  per_process = shards // processes
  return range(index * per_process, (index + 1) * per_process)


class TrainInput:
  """This process's packed training batches, endless, with a position that can be saved.

  Shard ``s`` of ``S`` owns a contiguous ``1/S`` of each store's examples
  (``token_store.shard_bounds``), and this process reads only its own shards' examples; each
  epoch visits them in a new permutation (``seed`` and ``s`` seed it), and grain's first-fit
  packer fills ``packing_bins`` rows at a time from that stream. A global batch is shard 0's
  rows, then shard 1's, ...: the batches depend on ``input_shards``, never on how many
  processes read them, and a position saved by 8 hosts restores on 4.
  """

  def __init__(self, sources: list, global_batch_size: int, row_lengths: dict, *,
               seed: int, input_shards: Optional[int] = None, packing_bins: int = 64,
               progress: bool = False):
    """``sources``: ``[(store, rate)]`` (``token_store.tokenized_sources``): each store has a
    length, ``max_length(feature)`` and ``shard(index, count)``, which reads that shard.
    ``progress``: a byte counter while a remote store's shard is read."""
    self.shards = _shards_of_this_process(global_batch_size, input_shards)
    self.num_shards = input_shards or jax.process_count()
    self.rows_per_shard = global_batch_size // self.num_shards
    for feature, length in row_lengths.items():
      longest = max(store.max_length(feature) for store, _ in sources)
      if longest > length:
        name = {"inputs": "INPUT", "targets": "TARGET"}[feature]
        raise InputConfigError(
            f"a packed {feature} row of {length} tokens cannot hold an example of {longest}: "
            f"raise PACKED_{name}_LENGTH or lower {name}_LENGTH (the per-example cut)")
    self._iterators = {s: iter(self._dataset(sources, s, row_lengths, seed, packing_bins,
                                             progress)) for s in self.shards}

  def _dataset(self, sources, shard, row_lengths, seed, packing_bins, progress):
    shard_seed = int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])
    parts = [grain.MapDataset.source(store.shard(shard, self.num_shards, progress=progress))
             for store, _ in sources]
    if not all(len(part) for part in parts):
      raise InputConfigError(f"input shard {shard} of {self.num_shards} has no examples (the split "
                       f"has {min(len(store) for store, _ in sources)}); use fewer input shards")
    examples = parts[0] if len(parts) == 1 else grain.MapDataset.mix(
        parts, [rate for _, rate in sources])
    stream = examples.shuffle(seed=shard_seed).repeat().to_iter_dataset(
        grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    packed = grain.experimental.FirstFitPackIterDataset(
        stream, length_struct=dict(row_lengths), num_packing_bins=packing_bins,
        shuffle_bins=False)
    return packed.batch(self.rows_per_shard, drop_remainder=True).map(enc_dec_features)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    parts = [next(self._iterators[s]) for s in self.shards]
    return parts[0] if len(parts) == 1 else {
        k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def state(self) -> dict:
    """Every shard's position (all processes', gathered): ``{"shards": S, "0": {...}, ...}``.
    Every process must call it (it is a collective when there are several)."""
    local = json.dumps({str(s): it.get_state() for s, it in self._iterators.items()})
    states = {}
    for text in _gather_text(local):
      states.update(json.loads(text))
    return {"shards": self.num_shards, **states}

  def restore(self, saved: dict):
    """Continues from ``state()``'s dictionary; refuses one of another shard count."""
    if saved.get("shards") != self.num_shards:
      raise InputConfigError(
          f"the checkpoint's input position is for {saved.get('shards')} input shards, this "
          f"run reads {self.num_shards} (set train.input_shards={saved.get('shards')} to "
          f"resume it)")
    for shard, iterator in self._iterators.items():
      iterator.set_state(saved[str(shard)])


def epoch_rows(sources: list, row_lengths: dict, packing_bins: int = 64) -> int:
  """Rows of ``row_lengths`` that one pass over the sources' examples fills, packed first-fit
  as ``TrainInput`` packs them (in store order; a shuffled pass fills within a few rows of
  it): an epoch counted in the trainer's rows."""
  rows = 0
  for store, _ in sources:
    stream = grain.MapDataset.source(store.shard(0, 1)).to_iter_dataset(
        grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    rows += sum(1 for _ in grain.experimental.FirstFitPackIterDataset(
        stream, length_struct=dict(row_lengths), num_packing_bins=packing_bins,
        shuffle_bins=False))
  return rows


def _gather_text(text: str) -> list:
  """Every process's ``text`` (one JSON object each), on every process."""
  if jax.process_count() == 1:
    return [text]
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  data = np.frombuffer(text.encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.array([data.size], np.int32))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  gathered = multihost_utils.process_allgather(padded)
  return [bytes(row[:int(n)]).decode() for row, n in zip(gathered, sizes.reshape(-1))]


def enc_dec_features(packed: dict) -> dict:
  """grain's packed rows -> the features ``seqio.EncDecFeatureConverter(pack=True)`` gives:
  the decoder reads the targets shifted right within each segment (0 where one starts)."""
  targets, segments = packed["targets"], packed["targets_segment_ids"]
  decoder_inputs = np.zeros_like(targets)
  decoder_inputs[..., 1:] = targets[..., :-1] * (segments[..., 1:] == segments[..., :-1])
  as_int = lambda x: np.asarray(x, np.int32)  # pylint: disable=unnecessary-lambda-assignment
  return {"encoder_input_tokens": as_int(packed["inputs"]),
          "encoder_segment_ids": as_int(packed["inputs_segment_ids"]),
          "encoder_positions": as_int(packed["inputs_positions"]),
          "decoder_target_tokens": as_int(targets),
          "decoder_input_tokens": as_int(decoder_inputs),
          "decoder_loss_weights": as_int(targets > 0),
          "decoder_segment_ids": as_int(segments),
          "decoder_positions": as_int(packed["targets_positions"])}


def fill(batch: dict) -> dict:
  """How much of a packed batch is real: token fill of each side, examples per row."""
  rows = batch["decoder_target_tokens"].shape[0]
  return {"input_fill": float(np.mean(batch["encoder_segment_ids"] > 0)),
          "target_fill": float(np.mean(batch["decoder_segment_ids"] > 0)),
          "examples_per_row": float(batch["decoder_segment_ids"].max(axis=1).sum() / rows)}


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
