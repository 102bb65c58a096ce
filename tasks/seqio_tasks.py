"""SeqIO tasks over the prepared sources: the interface the trainer and evaluator read.

  task = meena_tasks.get_task("chitchat", data_dir="~/tensorflow_datasets")
  ds = task.get_dataset({"inputs": 128, "targets": 128}, split="train", shuffle=True, seed=0)

``get_task`` prepares the TFDS builder (and so its vocabulary) on first use, saying so, then
(re)registers the task over that data directory; ``python -m meena_tasks.prepare`` prepares
ahead. Each example: context turns joined with the ``<turn>`` piece -> ``inputs`` (the most
recent ``inputs`` tokens kept, no EOS); response -> ``targets`` (trimmed, EOS appended).
``seqio.EncDecFeatureConverter`` then packs training batches or pads eval batches.
"""
import functools
import hashlib
import logging
import os
import pathlib
import re
from typing import Optional

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from meena_jax import storage
from meena_tasks import builders, sources, vocab

log = logging.getLogger("meena_tasks.seqio_tasks")
DEFAULT_DATA_DIR = "~/tensorflow_datasets"
SOURCES = {  # Task name -> its TFDS builder; keyword arguments reach the builder.
    "chitchat": builders.Chitchat,
    "reddit2015": builders.Reddit2015,  # source_dir=: a local copy instead of the download.
    # Needs config=builders.PushshiftConfig(name=..., comment_files=(...), ...).
    "pushshift_reddit": builders.PushshiftReddit,
}


def join_turns(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """``context`` turns joined by the turn separator -> ``inputs``; ``response`` -> ``targets``."""
  def join(ex):
    return {"inputs": tf.strings.reduce_join(ex["context"], separator=f" {vocab.TURN_SEPARATOR} "),
            "targets": ex["response"], "id": ex["id"]}
  return dataset.map(join, num_parallel_calls=tf.data.AUTOTUNE)


def keep_most_recent_inputs(dataset: tf.data.Dataset,
                            sequence_length: Optional[dict] = None) -> tf.data.Dataset:
  """Left-truncates ``inputs`` to ``sequence_length["inputs"]`` tokens: the latest turns stay.
  Without a length (scoring whole examples) nothing is cut."""
  length = (sequence_length or {}).get("inputs")
  if not length:
    return dataset
  return dataset.map(lambda ex: {**ex, "inputs": ex["inputs"][-length:]},
                     num_parallel_calls=tf.data.AUTOTUNE)


def tokenize_contexts(contexts, vocabulary, length: int) -> list:
  """(most recent ``length`` token ids, full token count) per context (a list of turns),
  through the task's own ``join_turns`` and ``keep_most_recent_inputs``: what chat, the reward
  model and the safety suite feed a model is what it was trained on."""
  dataset = tf.data.Dataset.from_generator(
      lambda: ({"context": list(turns) or [""], "response": "", "id": ""} for turns in contexts),
      output_signature={"context": tf.TensorSpec([None], tf.string),
                        "response": tf.TensorSpec([], tf.string),
                        "id": tf.TensorSpec([], tf.string)})
  dataset = seqio.preprocessors.tokenize(
      join_turns(dataset),
      {"inputs": seqio.Feature(vocabulary, add_eos=False),
       "targets": seqio.Feature(vocabulary, add_eos=True)}, copy_pretokenized=False)
  dataset = dataset.map(lambda ex: {**ex, "full_length": tf.size(ex["inputs"])})
  dataset = keep_most_recent_inputs(dataset, {"inputs": length})
  return [(ex["inputs"], int(ex["full_length"])) for ex in dataset.as_numpy_iterator()]


def _dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None, *,
                builder: tfds.core.DatasetBuilder) -> tf.data.Dataset:
  return builder.as_dataset(split=split, shuffle_files=shuffle_files,
                            read_config=tfds.ReadConfig(shuffle_seed=seed))


def get_task(name: str, data_dir: str = DEFAULT_DATA_DIR, **builder_kwargs) -> seqio.Task:
  """The SeqIO task ``name`` over ``data_dir``, its builder prepared first (a no-op once done).

  ``builder_kwargs`` go to the TFDS builder: ``config`` (Pushshift files), ``vocab_file``,
  ``vocab_size``, ``skip_malformed``, ``source_dir`` (reddit2015's local copy). Unset (None)
  ones are left out, so a task file's settings do not trouble another task's builder.
  """
  builder_kwargs = {k: v for k, v in builder_kwargs.items() if v is not None}
  if name not in SOURCES:
    raise ValueError(f"unknown task {name!r}; choose one of {sorted(SOURCES)}")
  data_dir = os.path.expanduser(data_dir)  # TFDS would create a directory literally named "~".
  return _register(name, SOURCES[name](data_dir=data_dir, **builder_kwargs))


def jsonl_task(path: str, vocab_file: str, data_dir: str = DEFAULT_DATA_DIR) -> seqio.Task:
  """A task over one conversation JSONL file in the reddit2015 format (split ``test``), read
  through the ``conversations_jsonl`` builder with Meena's filters and ``vocab_file`` (the
  evaluated model's vocabulary). Prepared once per file content: the config name carries a hash
  of the path, size and modification time."""
  path = pathlib.Path(path).expanduser().resolve()  # --jsonl: a local file.
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such conversation file")
  stat = path.stat()
  digest = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
  stem = re.sub(r"[^a-z0-9]+", "_", path.name.lower()).strip("_")
  config = builders.JsonlConfig(name=f"file_{stem}_{digest}", files={"test": [str(path)]})
  builder = builders.ConversationsJsonl(config=config, vocab_file=vocab_file,
                                        data_dir=os.path.expanduser(data_dir))
  try:
    return _register(f"jsonl_{stem}_{digest}", builder)
  except (sources.MalformedInputError, builders.NoExamplesError):
    # Nothing half-made stays behind: the config's directory holds no finished version.
    config_dir = storage.path(builder.data_dir).parent
    if config_dir.name == config.name and not any(
        p.is_dir() and not p.name.startswith("incomplete") for p in config_dir.iterdir()):
      storage.remove_tree(config_dir)
      # TFDS may have noted the config in `.config/metadata.json`; nothing else there: remove.
      if not any(p.name != ".config" for p in config_dir.parent.iterdir()):
        storage.remove_tree(config_dir.parent)
    raise


class DataDirError(sources.DataError):
  """The data directory cannot hold a task that must still be prepared; names the path."""


def prepare(builder, name: str, beam_options=None):
  """Downloads and prepares ``builder``'s data (and trains its vocabulary if missing), saying so:
  a run that finds its task unprepared does this once (``python -m meena_jax prepare`` does
  it ahead). ``beam_options``: the ``PipelineOptions`` of a Beam-built source (Pushshift)."""
  _check_writable(builder.data_dir_root, name)
  log.info("preparing task %s under %s (first use; python -m meena_jax prepare %s does this "
           "ahead of a run)", name, builder.data_dir_root, name)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      beam_options=beam_options))


def _register(name: str, builder) -> seqio.Task:
  """(Re)registers task ``name`` over ``builder``, preparing it first if needed."""
  if not builder.is_prepared():
    prepare(builder, name)
  if name in seqio.TaskRegistry.names():  # Registered before, maybe over another data_dir.
    seqio.TaskRegistry.remove(name)
  vocabulary = seqio.SentencePieceVocabulary(str(builder.vocab_file))
  return seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          dataset_fn=functools.partial(_dataset_fn, builder=builder),
          splits=list(builder.info.splits.keys())),
      preprocessors=[join_turns, seqio.preprocessors.tokenize, keep_most_recent_inputs,
                     seqio.preprocessors.append_eos_after_trim],
      output_features={"inputs": seqio.Feature(vocabulary, add_eos=False),
                       "targets": seqio.Feature(vocabulary, add_eos=True)})


def _check_writable(data_dir, name: str):
  """Raises ``DataDirError`` (one line) before TFDS fails half-way with a traceback (a local
  or ``gs://`` directory: a missing bucket or a 403 says so)."""
  try:
    storage.writable_dir(data_dir, "DATA_DIR")
  except storage.StorageError as error:
    raise DataDirError(f"DATA_DIR={data_dir}: task {name!r} is not prepared there and "
                       f"{error.why}; pass a writable --gin.DATA_DIR, or one where it is "
                       f"prepared") from None


def get_reddit_mixture(pushshift_config: builders.PushshiftConfig,
                       data_dir: str = DEFAULT_DATA_DIR, **reddit2015_kwargs) -> seqio.Mixture:
  """``reddit``: reddit2015 and Pushshift dumps in proportion to their examples, both read
  with reddit2015's vocabulary (a mixture needs one). ``reddit2015_kwargs`` go to its builder."""
  data_dir = os.path.expanduser(data_dir)
  get_task("reddit2015", data_dir, **reddit2015_kwargs)
  reddit2015 = SOURCES["reddit2015"](data_dir=data_dir, **reddit2015_kwargs)  # Now prepared.
  pushshift_kwargs = dict(config=pushshift_config, vocab_file=str(reddit2015.vocab_file))
  get_task("pushshift_reddit", data_dir, **pushshift_kwargs)
  pushshift = SOURCES["pushshift_reddit"](data_dir=data_dir, **pushshift_kwargs)
  # Rates are train-example counts (FunctionDataSource cannot count them for SeqIO).
  rates = [(name, builder.info.splits["train"].num_examples if "train" in builder.info.splits
            else 0) for name, builder in (("reddit2015", reddit2015),
                                          ("pushshift_reddit", pushshift))]
  if "reddit" in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove("reddit")
  return seqio.MixtureRegistry.add("reddit", rates)
