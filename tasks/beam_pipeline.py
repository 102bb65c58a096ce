"""Pushshift dumps -> Meena's examples as an Apache Beam pipeline: the scale path of the data.

It runs wherever Beam runs: the DirectRunner on this machine (``--direct_num_workers=2
--direct_running_mode=multi_processing``), Dataflow, Flink or Spark at Meena's size. The rules
are the in-memory builders' own functions (``sources.trees``, ``conversations.clean_messages``,
``filter_messages``, ``make_examples``, ``vocab.sample_key``); only the orchestration is Beam's:

  dumps (one element a file, streamed) -> (link_id, message)      sources.pushshift_records
    -> GroupByKey(link_id) -> trees, each in its split             sources.trees, hash_split
    -> cleaned trees                                               conversations.clean_messages
    -> CombinePerKey(text): occurrences, and whether in train  -> frequent texts (side input)
                                                               -> Top.Smallest(sample_key):
                                                                  the vocabulary's sample,
                                                                  trained once (side input)
    -> batches of trees -> filters and examples                    filter_messages, make_examples
    -> one TFRecord file set per split (JSON examples)
  filter statistics: Beam counters (namespace ``meena_filters``), read back into
  ``filter_statistics.json`` by ``run``.

Memory is bounded by what one worker holds at once: a chunk of a dump, one submission's
thread, a batch of trees, the frequent texts and the vocabulary's sample (``--vocab_sample``).
Each dump is one element (a zstandard stream cannot be split), so the read stage runs as many
workers as there are dumps; every later stage spreads over all of them.
"""
import collections
import dataclasses
import json
import logging
import os
import re
import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from meena_jax import storage
from meena_tasks import conversations, sources, text_filters, vocab
from meena_tasks.conversations import FilterStatistics

log = logging.getLogger("meena_tasks.beam_pipeline")
NAMESPACE = "meena_filters"
SPLITS = tuple(split for split, _ in sources.SPLIT_FRACTIONS)
DONE = "done.json"  # Written last: the examples of a finished pipeline, and their statistics.


class PipelineError(sources.DataError):
  """The pipeline failed; the first line of the worker's error (the whole is in its log)."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the pipeline reads and how: the dumps, the vocabulary (an existing ``vocab_file``,
  or one trained on a sample of ``vocab_sample`` train texts into ``vocab_path``)."""
  comment_files: tuple
  submission_files: tuple = ()
  skip_malformed: bool = False
  vocab_path: str = ""
  train_vocab: bool = True
  vocab_size: int = 8000
  vocab_sample: int = vocab.MAX_TRAINING_SENTENCES
  seed: int = 0
  batch_trees: int = 256  # Trees filtered together (the offensive classifier is batched).


def _count(stats_key: str, value: int):
  if value:
    Metrics.counter(NAMESPACE, stats_key).inc(value)


class _ReadDump(beam.DoFn):
  """One dump -> ``(link, (file number, offset, message))``, streamed."""

  def __init__(self, skip_malformed: bool):
    self.skip_malformed = skip_malformed

  def process(self, element):
    number, path, submissions = element
    stats = FilterStatistics()
    for offset, message, link in sources.pushshift_records(path, self.skip_malformed, stats,
                                                           submissions):
      yield link, (number, offset, message)
    _count("train/malformed_skipped", stats.malformed_skipped)  # Where today's builder counts.


def _trees(element):
  """One submission's records, in dump order -> ``(split, tree)`` of each tree it holds."""
  _, records = element
  ordered = [message for _, _, message in sorted(records, key=lambda r: (r[0], r[1]))]
  for key, tree in sources.trees(ordered).items():
    yield sources.hash_split(key), tree


def _clean(element):
  split, tree = element
  return split, tree, conversations.clean_messages(tree)


def _texts(element):
  """``(text, (1, in train))`` of every cleaned message: the occurrence count and the
  vocabulary's candidates in one pass."""
  split, _, cleaned = element
  for message in cleaned:
    if message is not None:
      yield message.text, (1, split == "train")


class _CountInTrain(beam.CombineFn):
  """``(occurrences, seen in train)`` of one text."""

  def create_accumulator(self):
    return 0, False

  def add_input(self, accumulator, value):
    return accumulator[0] + value[0], accumulator[1] or value[1]

  def merge_accumulators(self, accumulators):
    counts, trains = zip(*accumulators)
    return sum(counts), any(trains)

  def extract_output(self, accumulator):
    return accumulator


class _FilterTrees(beam.DoFn):
  """A batch of cleaned trees -> ``(split, example)``, Meena's filters applied per split of
  the batch (each tree is whole in one batch, so a message, its parent and its subtree are
  judged together, as the in-memory builder does over a whole split)."""

  def __init__(self):
    self._processor, self._model, self._frequent, self._frequent_key = None, None, None, None

  def process(self, batch, frequent, model: bytes):
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    if self._model is not model:
      self._processor, self._model = spm.SentencePieceProcessor(model_proto=model), model
    if self._frequent_key is not frequent:  # A side input's dict, once per worker.
      self._frequent, self._frequent_key = collections.Counter(frequent), frequent
    by_split = collections.defaultdict(lambda: ([], []))
    for split, tree, cleaned in batch:
      by_split[split][0].extend(tree)
      by_split[split][1].extend(cleaned)
    for split, (messages, cleaned) in by_split.items():
      stats = FilterStatistics()
      survivors = conversations.filter_messages(
          messages, cleaned, lambda texts: [len(ids) for ids in self._processor.encode(texts)],
          self._frequent, stats)
      for example in conversations.make_examples(survivors, stats):
        yield split, example
      for key, value in stats.as_dict().items():
        if isinstance(value, dict):
          for reason, count in value.items():
            _count(f"{split}/{key}/{reason}", count)
        else:
          _count(f"{split}/{key}", value)


def _train_vocabulary(smallest: list, settings: Settings) -> bytes:
  """The vocabulary trained on the sample (``Top.Smallest`` of ``vocab.sample_key``), written
  to ``settings.vocab_path``; its bytes, for the filters."""
  sentences = [text for _, text in sorted(smallest)]
  path = vocab.train_on_sample(sentences, settings.vocab_path, settings.vocab_size)
  return storage.path(path).read_bytes()


def _as_json(example: conversations.Example) -> bytes:
  return json.dumps(dataclasses.asdict(example), ensure_ascii=False).encode("utf-8")


def from_json(data: bytes) -> conversations.Example:
  fields = json.loads(data.decode("utf-8"))
  return conversations.Example(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in fields.items()})


def build(pipeline: beam.Pipeline, settings: Settings, output_dir: str):
  """Adds the pipeline to ``pipeline``; examples go to ``<output_dir>/<split>-*.tfrecord``."""
  files = [(n, str(p), True) for n, p in enumerate(settings.submission_files)]
  files += [(len(files) + n, str(p), False) for n, p in enumerate(settings.comment_files)]
  trees = (pipeline
           | "Dumps" >> beam.Create(files)
           | "Read" >> beam.ParDo(_ReadDump(settings.skip_malformed))
           | "BySubmission" >> beam.GroupByKey()
           | "Trees" >> beam.FlatMap(_trees)
           | "Clean" >> beam.Map(_clean))
  counts = (trees
            | "Texts" >> beam.FlatMap(_texts)
            | "Count" >> beam.CombinePerKey(_CountInTrain()))
  frequent = (counts
              | "Frequent" >> beam.Filter(lambda kv: text_filters.too_frequent(kv[1][0]))
              | "FrequentCounts" >> beam.Map(lambda kv: (kv[0], kv[1][0])))
  if settings.train_vocab:
    model = (counts
             | "TrainTexts" >> beam.Filter(lambda kv: kv[1][1] and kv[0])
             | "SampleKeys" >> beam.Map(lambda kv, seed: vocab.sample_key(kv[0], seed),
                                        settings.seed)
             | "Sample" >> beam.combiners.Top.Smallest(settings.vocab_sample)
             | "Vocabulary" >> beam.Map(_train_vocabulary, settings))
  else:
    model = (pipeline | "Vocabulary" >> beam.Create([settings.vocab_path])
             | "ReadVocabulary" >> beam.Map(lambda p: storage.path(p).read_bytes()))
  examples = (trees
              | "Batch" >> beam.BatchElements(min_batch_size=settings.batch_trees,
                                              max_batch_size=settings.batch_trees)
              | "Filter" >> beam.ParDo(_FilterTrees(), beam.pvalue.AsDict(frequent),
                                       beam.pvalue.AsSingleton(model)))
  parts = examples | "BySplit" >> beam.Partition(lambda kv, n: SPLITS.index(kv[0]), len(SPLITS))
  for split, part in zip(SPLITS, parts):
    _ = (part
         | f"Json{split}" >> beam.Map(lambda kv: _as_json(kv[1]))
         | f"Write{split}" >> beam.io.WriteToTFRecord(
             os.path.join(output_dir, split), file_name_suffix=".tfrecord"))


def statistics(result) -> dict:
  """``{split: FilterStatistics.as_dict()}`` from a finished pipeline's counters."""
  stats = {split: FilterStatistics() for split in SPLITS}
  query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
  for counter in query["counters"]:
    value = counter.committed if counter.committed is not None else counter.attempted
    split, *key = counter.key.metric.name.split("/")
    if key[0] == "removed":
      stats[split].removed[key[1]] += value
    else:
      setattr(stats[split], key[0], getattr(stats[split], key[0]) + value)
  return {split: s.as_dict() for split, s in stats.items()}


def run(settings: Settings, output_dir: str, options=None) -> dict:
  """Runs the pipeline (unless ``output_dir`` holds a finished one: a restarted prepare
  skips it) and returns ``{"statistics": ..., "examples": {split: count}}``, also written to
  ``<output_dir>/done.json``."""
  done = storage.path(output_dir) / DONE
  if done.exists():
    log.info("examples already made in %s (delete it to make them again)", output_dir)
    return json.loads(done.read_text())
  storage.writable_dir(output_dir, "the pipeline's output directory")
  for stale in storage.path(output_dir).glob("*.tfrecord"):
    stale.unlink()  # A run cut off before done.json: its shards are redone.
  pipeline = beam.Pipeline(options=options)
  build(pipeline, settings, output_dir)
  try:
    result = pipeline.run()
    result.wait_until_finish()
  except Exception as error:  # pylint: disable=broad-except  # Runners wrap workers' errors.
    raise PipelineError(f"the Beam pipeline failed: {_cause(error)}") from None
  stats = statistics(result)
  summary = {"statistics": stats,
             "examples": {split: s["examples_out"] for split, s in stats.items()}}
  storage.write_text(done, json.dumps(summary, indent=1))
  return summary


def _cause(error: Exception) -> str:
  """The worker's own error in a runner's wrapped one: the last ``SomeError: message`` line
  of the traceback text it carries (the transform's name stripped), else the first line."""
  text = str(error).replace("\\n", "\n")
  causes = re.findall(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+?)(?: \[while running .*)?$",
                      text, re.MULTILINE)
  if causes:
    kind, message = causes[-1]
    return f"{kind}: {message}"
  lines = [re.sub(r" \[while running .*$", "", line) for line in text.splitlines()
           if line.strip()]
  return lines[0] if lines else repr(error)


def read_examples(output_dir: str, split: str):
  """A PTransform reading one split's examples back (``(id, Example)``)."""
  pattern = os.path.join(output_dir, f"{split}-*.tfrecord")
  return (beam.io.ReadFromTFRecord(pattern)
          | beam.Map(lambda data: (lambda ex: (ex.id, ex))(from_json(data))))
