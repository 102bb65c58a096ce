"""A split of a SeqIO task, tokenised once into flat arrays that any example can be read from,
by each host for its own examples only.

Training reads examples by index (``input_pipeline``): a shuffled epoch is a permutation, and
an input position is a few integers, so a resumed run seeks instead of replaying every batch
since step 0. The examples are the task's own (its preprocessors: turns joined, tokenised, the
context cut to its most recent ``inputs`` tokens, EOS after the trimmed response), in file
order, stored as numbered files of consecutive examples: per file and feature
``<feature>.tokens-<i>.npy`` (its examples' tokens, int32) and
``<feature>.offsets-<i>.npy`` (int64, example ``j`` of the file is
``tokens[offsets[j]:offsets[j + 1]]``), and ``meta.json`` (examples per file, longest
example, where each array's data starts), written last: a store without it is incomplete.

Input shard ``s`` of ``S`` owns examples ``[s * N // S, (s + 1) * N // S)``, a contiguous
range, so a host reads only its own slice of the few files it overlaps (``StoredTokens.shard``):
locally through a memory map, on ``gs://`` by byte ranges through tensorstore's kvstore (the
library orbax writes arrays with; TensorFlow's filesystem would fetch 64 MB blocks). At Meena's
corpus (some 56B tokens, over 200 GB a feature) a host of a 64-host slice reads 1/64 of it.

SeqIO's own cache (``seqio.CacheDatasetPlaceholder`` + ``cache_tasks_main``) writes TFRecords,
which are read in order, not by index. ArrayRecord serves indices, but a record per example
costs a lookup per example; a host's contiguous slice of two flat arrays is two ranged reads
per file and feature, and any path layer can serve it. This module builds a store in one pass
(tens of seconds for chitchat, minutes for reddit2015); at Meena's size that is a Beam job.
"""
import bisect
import dataclasses
import hashlib
import io
import json
import logging
import os
import uuid
from typing import Optional

import numpy as np
import seqio
import tqdm

from meena_jax import storage

log = logging.getLogger("meena_jax.token_store")
FEATURES = ("inputs", "targets")
FORMAT = 2
META = "meta.json"
FILE_BYTES = 256 * 2 ** 20  # A new file when the current one's tokens reach this.
READ_CHUNK = 64 * 2 ** 20   # Ranged reads of at most this many bytes, issued together.


class CacheDirError(ValueError):
  """The store is missing and its directory cannot be written; names the setting."""


def shard_bounds(examples: int, index: int, count: int) -> tuple[int, int]:
  """The contiguous example range ``[start, stop)`` input shard ``index`` of ``count`` owns."""
  return index * examples // count, (index + 1) * examples // count


class TokenStore:
  """Random access to tokenised examples held in memory or memory-mapped:
  ``store[i] == {"inputs": ..., "targets": ...}``.

  Kept as segments (one per stored file read), each a token array per feature and the
  offsets into it, so a host's slice of several files is never copied into one array.
  """

  def __init__(self, segments: list, path: str = "memory"):
    """``segments``: ``[{feature: (tokens, offsets)}]``; a segment's examples are
    ``tokens[offsets[j]:offsets[j + 1]]``."""
    self.segments, self.path = segments, path
    counts = [len(s[FEATURES[0]][1]) - 1 for s in segments]
    self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

  @classmethod
  def from_arrays(cls, tokens: dict, offsets: dict, path: str = "memory") -> "TokenStore":
    """One segment: ``tokens[f]`` all of feature ``f``'s tokens, ``offsets[f]`` the bounds."""
    return cls([{f: (np.asarray(tokens[f]), np.asarray(offsets[f])) for f in FEATURES}], path)

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(f"example {index} of a store of {len(self)}")
    segment = bisect.bisect_right(self._starts, index) - 1
    j = index - int(self._starts[segment])
    return {f: np.asarray(tokens[offsets[j]:offsets[j + 1]])
            for f, (tokens, offsets) in self.segments[segment].items()}

  def lengths(self, feature: str) -> np.ndarray:
    return np.concatenate([np.diff(s[feature][1]) for s in self.segments]
                          or [np.zeros(0, np.int64)])

  def max_length(self, feature: str) -> int:
    return int(self.lengths(feature).max()) if len(self) else 0

  def shard(self, index: int, count: int, progress: bool = False) -> "TokenStore":
    """The examples input shard ``index`` of ``count`` owns (``shard_bounds``), as a view."""
    del progress  # Nothing is read.
    start, stop = shard_bounds(len(self), index, count)
    segments = []
    for k, segment in enumerate(self.segments):
      lo = max(start, int(self._starts[k])) - int(self._starts[k])
      hi = min(stop, int(self._starts[k + 1])) - int(self._starts[k])
      if lo < hi:
        segments.append({f: (tokens, offsets[lo:hi + 1])
                         for f, (tokens, offsets) in segment.items()})
    return TokenStore(segments, self.path)


@dataclasses.dataclass(frozen=True)
class StoredTokens:
  """A store on disk or GCS, known by its ``meta.json``; reads happen in ``read``/``shard``."""
  path: str
  meta: dict

  def __len__(self) -> int:
    return sum(f["examples"] for f in self.meta["files"])

  def max_length(self, feature: str) -> int:
    return self.meta["max_length"][feature]

  def shard(self, index: int, count: int, progress: bool = False) -> TokenStore:
    """Reads only the examples input shard ``index`` of ``count`` owns."""
    return self.read(*shard_bounds(len(self), index, count), progress=progress)

  def read(self, start: int, stop: int, progress: bool = False) -> TokenStore:
    """Examples ``[start, stop)``: a memory map of local files, byte ranges of remote ones
    (the offsets of the range, then the tokens they bound)."""
    segments, first = [], 0
    plan = []  # (file number, first example in it, stop example in it).
    for number, entry in enumerate(self.meta["files"]):
      lo, hi = max(start, first) - first, min(stop, first + entry["examples"]) - first
      if lo < hi:
        plan.append((number, lo, hi))
      first += entry["examples"]
    if storage.is_remote(self.path):
      return TokenStore(_read_remote(self, plan, progress), self.path)
    for number, lo, hi in plan:
      segments.append({f: (self._memmap(f, "tokens", number),
                           self._memmap(f, "offsets", number)[lo:hi + 1]) for f in FEATURES})
    return TokenStore(segments, self.path)

  def _memmap(self, feature: str, kind: str, number: int) -> np.ndarray:
    return np.load(os.path.join(self.path, file_name(feature, kind, number)), mmap_mode="r")


def file_name(feature: str, kind: str, number: int) -> str:
  """``inputs.tokens-00003.npy``: file 3's tokens of the contexts."""
  return f"{feature}.{kind}-{number:05d}.npy"


def _read_remote(store: StoredTokens, plan: list, progress: bool) -> list:
  """The planned files' ranges through tensorstore: first every offsets range, then every
  tokens range they bound, each split into ``READ_CHUNK`` reads issued at once."""
  import tensorstore as ts  # pylint: disable=import-outside-toplevel
  kvstore = ts.KvStore.open(store.path.rstrip("/") + "/").result()

  def fetch(requests: list) -> list:
    """``[(name, dtype, first item, stop item)]`` -> arrays, read concurrently."""
    pending = []
    for name, dtype, lo, hi in requests:
      base = store.meta["data_offset"][name]
      size = np.dtype(dtype).itemsize
      chunks = [(base + a * size, base + min(a + READ_CHUNK // size, hi) * size)
                for a in range(lo, hi, READ_CHUNK // size)] or [(base, base)]
      pending.append((name, dtype, [kvstore.read(name, byte_range=slice(a, b))
                                    for a, b in chunks], (hi - lo) * size))
    arrays = []
    with tqdm.tqdm(total=sum(p[3] for p in pending), unit="B", unit_scale=True,
                   desc=f"read {os.path.basename(store.path)}", disable=not progress) as bar:
      for name, dtype, futures, expected in pending:
        data, at = np.empty(expected, np.uint8), 0  # Filled chunk by chunk: no joined copy.
        for future in futures:
          try:
            result = future.result()
          except ValueError as error:  # tensorstore's: OUT_OF_RANGE, PERMISSION_DENIED, ...
            raise storage.StorageError(f"{store.path}/{name}: {str(error).splitlines()[0]} (a "
                                       f"truncated or unreadable file)") from None
          if result.state != "value":
            raise storage.StorageError(f"{store.path}/{name}: missing (the store is "
                                       f"incomplete; delete it to rebuild)")
          chunk = np.frombuffer(result.value, np.uint8)
          if at + len(chunk) > expected:
            break
          data[at:at + len(chunk)] = chunk
          at += len(chunk)
          bar.update(len(chunk))
        if at != expected:
          raise storage.StorageError(f"{store.path}/{name}: {at} bytes where {expected} were "
                                     f"expected (a truncated file)")
        arrays.append(data.view(dtype))
    return arrays

  offsets = fetch([(file_name(f, "offsets", n), np.int64, lo, hi + 1)
                   for n, lo, hi in plan for f in FEATURES])
  bounds = iter(offsets)
  token_requests, rebased = [], []
  for n, _, _ in plan:
    for f in FEATURES:
      o = next(bounds)
      token_requests.append((file_name(f, "tokens", n), np.int32, int(o[0]), int(o[-1])))
      rebased.append(o - o[0])
  tokens = fetch(token_requests)
  segments, k = [], 0
  for _ in plan:
    segments.append({f: (tokens[k + i], rebased[k + i]) for i, f in enumerate(FEATURES)})
    k += len(FEATURES)
  return segments


def store_dir(cache_dir: str, task: seqio.Task, split: str, lengths: dict) -> str:
  """Where ``task``'s ``split`` cut to ``lengths`` is stored: named by the task, split, cut
  lengths and a hash of the vocabulary, so a retrained vocabulary never reads stale tokens."""
  vocabulary = task.output_features["targets"].vocabulary
  model = getattr(vocabulary, "sp_model", None) or repr(vocabulary).encode()
  digest = hashlib.sha256(model).hexdigest()[:12]
  return os.fspath(storage.path(cache_dir) / "meena_jax_tokenized" / task.name /
                   f"{split}-inputs{lengths['inputs']}-targets{lengths['targets']}-{digest}")


def open_store(path: str) -> Optional[StoredTokens]:
  """The store at ``path``, or None when it is missing or incomplete (no ``meta.json``)."""
  meta_file = storage.path(path) / META
  if not meta_file.exists():
    return None
  meta = json.loads(meta_file.read_text())
  if meta.get("format") != FORMAT:
    return None  # Written by another version: built again beside nothing it could misread.
  return StoredTokens(os.fspath(storage.path(path)), meta)


def tokenized(task: seqio.Task, split: str, lengths: dict, cache_dir: str,
              progress: bool = True) -> StoredTokens:
  """The store of ``task``'s ``split`` under ``cache_dir``, built first if missing. On
  ``gs://`` with several processes, process 0 builds and the others wait for it; a local
  directory is each host's own, so each builds its copy."""
  import jax  # pylint: disable=import-outside-toplevel
  path = store_dir(cache_dir, task, split, lengths)
  shared = storage.is_remote(path) and jax.process_count() > 1
  if open_store(path) is None and (not shared or jax.process_index() == 0):
    build(task, split, lengths, path, progress)
  if shared:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(f"meena_jax token store {path}")
  store = open_store(path)
  if store is None:
    raise storage.StorageError(f"{path}: the token store is incomplete after its build")
  return store


def tokenized_sources(task, split: str, lengths: dict, cache_dir: str,
                      progress: bool = True) -> list:
  """``[(store, rate)]``: one for a ``seqio.Task``, one per task of a ``seqio.Mixture`` with
  the mixture's rate (the stores are mixed by index, see ``input_pipeline.TrainInput``)."""
  if isinstance(task, seqio.Mixture):
    return [(tokenized(sub, split, lengths, cache_dir, progress), task.get_rate(sub))
            for sub in task.tasks]
  return [(tokenized(task, split, lengths, cache_dir, progress), 1.0)]


def build(task: seqio.Task, split: str, lengths: dict, path: str, progress: bool = True,
          file_bytes: int = FILE_BYTES) -> StoredTokens:
  """One pass over the task's examples in file order, a new file whenever the current one's
  tokens reach ``file_bytes``. Each file is written whole (locally renamed into place, on GCS
  an object appears complete), ``meta.json`` last: a crash leaves a store that reads as
  missing, and concurrent builders write identical bytes."""
  log.info("tokenising %s/%s once into %s", task.name, split, path)
  try:
    storage.writable_dir(path, "train.data_cache_dir")
  except storage.StorageError as error:
    raise CacheDirError(f"cannot write the tokenised {task.name}/{split} ({error}); pass "
                        f"--gin.train.data_cache_dir=<a writable directory>") from None
  dataset = task.get_dataset(lengths, split=split, shuffle=False, use_cached=False)
  examples = tqdm.tqdm(dataset.as_numpy_iterator(), desc=f"tokenise {task.name}/{split}",
                       unit=" examples", disable=not progress, mininterval=2.0)
  try:
    return write(path, examples, file_bytes)
  except ValueError:
    raise ValueError(f"task {task.name!r} split {split!r} has no examples to train on") from None


def write(path: str, examples, file_bytes: int = FILE_BYTES) -> StoredTokens:
  """Stores ``examples`` (dicts of ``inputs`` and ``targets`` token arrays) at ``path``, in
  order, a new file whenever the current one's tokens reach ``file_bytes``."""
  writer = _Writer(path, file_bytes)
  for example in examples:
    writer.add({f: np.asarray(example[f], np.int32) for f in FEATURES})
  if not writer.examples:
    raise ValueError(f"{path}: no examples to store")
  return writer.finish()


class _Writer:
  """Appends examples and writes a file per ``file_bytes`` of tokens as soon as it is full
  (memory holds one file), then ``meta.json``."""

  def __init__(self, path: str, file_bytes: int):
    self.directory, self.file_bytes = storage.path(path), file_bytes
    if not storage.is_remote(path):
      self.directory.mkdir(parents=True, exist_ok=True)
    self.files, self.data_offset, self.examples = [], {}, 0
    self.longest = dict.fromkeys(FEATURES, 0)
    self._parts, self._bytes = {f: [] for f in FEATURES}, 0

  def add(self, example: dict):
    for f in FEATURES:
      self._parts[f].append(example[f])
      self.longest[f] = max(self.longest[f], len(example[f]))
      self._bytes += example[f].nbytes
    self.examples += 1
    if self._bytes >= self.file_bytes:
      self._write_file()

  def _write_file(self):
    parts, number = self._parts, len(self.files)
    if not parts[FEATURES[0]]:
      return
    for f in FEATURES:
      offsets = np.zeros(len(parts[f]) + 1, np.int64)
      np.cumsum([len(p) for p in parts[f]], out=offsets[1:])
      for kind, array in (("tokens", np.concatenate(parts[f])), ("offsets", offsets)):
        name = file_name(f, kind, number)
        self.data_offset[name] = _write_npy(self.directory / name, array)
    self.files.append({"examples": len(parts[FEATURES[0]]),
                       "tokens": {f: int(sum(len(p) for p in parts[f])) for f in FEATURES}})
    self._parts, self._bytes = {f: [] for f in FEATURES}, 0

  def finish(self) -> StoredTokens:
    self._write_file()
    meta = {"format": FORMAT, "files": self.files, "max_length": self.longest,
            "data_offset": self.data_offset}
    storage.write_text(self.directory / META, json.dumps(meta, indent=1))
    return StoredTokens(os.fspath(self.directory), meta)


def _write_npy(path, array: np.ndarray) -> int:
  """Writes ``array`` as ``.npy`` whole or not at all; returns where its data starts."""
  buffer = io.BytesIO()
  np.save(buffer, array)
  data = buffer.getvalue()
  if storage.is_remote(path):
    path.write_bytes(data)
  else:
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.write_bytes(data)
    os.replace(staging, path)
  return len(data) - array.nbytes
