"""TFDS builders: raw conversations -> filtered (context, response) examples, with statistics.

Each builder reads its source (``sources.py``), cleans and filters messages with subtree removal
(``conversations.py``), and writes one TFDS example per surviving reply, plus
``filter_statistics.json`` beside the dataset's files. The subword-count filter needs the
source's vocabulary, so preparing a source also trains it (``vocab.py``) on the cleaned train
split when it is not there yet: ``<data_dir>/meena_vocab/<source>_<size>.model``.
"""
import abc
import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import socket
import urllib.parse
from typing import Iterable, Optional

import tensorflow_datasets as tfds

from meena_jax import storage
from meena_tasks import conversations, reddit_corpus, sources, vocab
from meena_tasks.conversations import FilterStatistics, Message

DEFAULT_VOCAB_SIZES = {"chitchat": 4000}


def vocab_path(data_dir, source: str, vocab_size: int) -> storage.Path:
  return storage.path(data_dir) / "meena_vocab" / f"{source}_{vocab_size}.model"


class _ConversationBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """What every conversation source shares: features, vocabulary, filter statistics."""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Meena filters, subtree removal, up to 7 context turns."}

  def __init__(self, *, vocab_size: Optional[int] = None, vocab_file: Optional[str] = None,
               skip_malformed: bool = False, vocab_sample_size: Optional[int] = None,
               **kwargs):
    """``vocab_file``: an existing SentencePiece model to count subwords with (e.g. to share
    reddit2015's between Reddit sources); by default the source's own, trained if missing on a
    deterministic sample of at most ``vocab_sample_size`` distinct train texts."""
    super().__init__(**kwargs)
    self.vocab_size = vocab_size or DEFAULT_VOCAB_SIZES.get(self.source_name, 8000)
    self.vocab_sample_size = vocab_sample_size or vocab.MAX_TRAINING_SENTENCES
    self.skip_malformed = skip_malformed
    self._vocab_file = storage.path(vocab_file) if vocab_file else None
    if self._vocab_file and not self._vocab_file.is_file():
      raise FileNotFoundError(f"{self.name}: vocab_file {vocab_file} does not exist")

  @property
  def source_name(self) -> str:
    return self.builder_config.name if self.builder_config else self.name

  @property
  def vocab_file(self) -> storage.Path:
    return self._vocab_file or vocab_path(self._data_dir_root, self.source_name,
                                          self.vocab_size)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "context": tfds.features.Sequence(tfds.features.Text()),
            "response": tfds.features.Text(),
            "context_speakers": tfds.features.Sequence(tfds.features.Text()),
            "response_speaker": tfds.features.Text(),
        }),
        supervised_keys=None)

  def _write_statistics(self, stats: dict):
    """``stats``: ``{split: FilterStatistics.as_dict()}``."""
    path = storage.path(self.data_dir) / "filter_statistics.json"
    if not storage.is_remote(path):
      path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_text(path, json.dumps(stats, indent=1))

  def _no_examples(self, stats: dict):
    counts = "; ".join(f"{split}: {_nonzero(s) or 'no messages'}" for split, s in stats.items())
    raise NoExamplesError(f"{self.name}/{self.builder_config.name}: no example survived the "
                          f"filters ({counts})")

  def _generate_examples(self, examples: Iterable[conversations.Example]):
    for ex in examples:
      yield ex.id, {"id": ex.id, "context": list(ex.context), "response": ex.response,
                    "context_speakers": list(ex.context_speakers),
                    "response_speaker": ex.response_speaker}


class _InMemoryBuilder(_ConversationBuilder, skip_registration=True):
  """The pipeline in one process, for sources that fit one: ``_read_groups`` gives message
  trees per split; cleaning, the occurrence count, the vocabulary, the filters and the
  examples follow (the functions ``beam_pipeline`` runs at scale)."""

  @abc.abstractmethod
  def _read_groups(self, stats: dict, dl_manager) -> dict[str, list[list[Message]]]:
    """{split: [messages of one conversation or tree, ...]}; may fill ``stats`` per split."""

  def _split_generators(self, dl_manager):
    stats = {}
    groups = self._read_groups(stats, dl_manager)
    cleaned = {split: [conversations.clean_messages(g) for g in gs]
               for split, gs in groups.items()}
    occurrences = conversations.text_occurrences(
        m for gs in cleaned.values() for g in gs for m in g)
    model = vocab.ensure(
        lambda: (m.text for g in cleaned["train"] for m in g if m is not None),
        self.vocab_file, self.vocab_size, max_sentences=self.vocab_sample_size)
    import sentencepiece as spm
    processor = spm.SentencePieceProcessor(model_proto=model.read_bytes())  # Local or gs://.
    count_subwords = lambda texts: [len(ids) for ids in processor.encode(texts)]
    examples = {}
    for split, split_groups in groups.items():
      # One call per split: filters batch their work (the offensive classifier especially).
      split_stats = stats.setdefault(split, FilterStatistics())
      messages = [m for g in split_groups for m in g]
      clean = [m for g in cleaned[split] for m in g]
      survivors = conversations.filter_messages(messages, clean, count_subwords, occurrences,
                                                split_stats)
      examples[split] = conversations.make_examples(survivors, split_stats)
    self._write_statistics({split: s.as_dict() for split, s in stats.items()})
    if not any(examples.values()):
      self._no_examples({split: s.as_dict() for split, s in stats.items()})
    # TFDS refuses an empty split (a small Pushshift sample may hash none into `test`); such a
    # split is left out, and its statistics still say why.
    return {split: self._generate_examples(exs) for split, exs in examples.items() if exs}

def statistics(builder: tfds.core.DatasetBuilder) -> dict:
  """The ``filter_statistics.json`` of a prepared builder."""
  return json.loads((storage.path(builder.data_dir) / "filter_statistics.json").read_text())


def chitchat_groups() -> dict[str, list[list[Message]]]:
  """chitchat conversations as message chains, split 90/5/5 by a hash of their id."""
  groups = {split: [] for split, _ in sources.SPLIT_FRACTIONS}
  for conversation_id, turns, speakers in sources.chitchat_conversations():
    groups[sources.hash_split(conversation_id)].append(
        conversations.chain(conversation_id, turns, speakers))
  return groups


def jsonl_groups(name: str, files: dict, skip_malformed: bool,
                 stats: dict) -> dict[str, list[list[Message]]]:
  """Conversations of JSONL files, ``files`` mapping each split to its paths."""
  groups = {}
  for split, paths in files.items():
    split_stats = stats.setdefault(split, FilterStatistics())
    groups[split] = []
    for path in paths:
      if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"conversations_jsonl/{name}: {split} file {path} does not "
                                f"exist")
      groups[split].extend(sources.read_jsonl(path, skip_malformed, split_stats))
  return groups


class Chitchat(_InMemoryBuilder):
  """The Chit Chat Challenge conversations of the ``chitchat_dataset`` package (7,168
  human-human conversations), split 90/5/5 by a hash of the conversation id."""

  def _read_groups(self, stats, dl_manager):
    return chitchat_groups()


@dataclasses.dataclass
class JsonlConfig(tfds.core.BuilderConfig):
  """Files per split (gzip or plain JSONL in the reddit2015 format)."""
  files: dict = dataclasses.field(default_factory=dict)


class ConversationsJsonl(_InMemoryBuilder):
  """Conversations from JSONL files, one ``{"id", "turns": [...]}`` object a line: pass
  ``config=JsonlConfig(name=..., files={"train": [...], ...})``."""

  def _read_groups(self, stats, dl_manager):
    return jsonl_groups(self.builder_config.name, self.builder_config.files,
                        self.skip_malformed, stats)


RAW_REDDIT2015 = ("https://github.com/leahrnh/reddit_corpus",
                  "bedbf6671d14d5fb4fa632bfd5e502bd5a8f7573")  # (repository, commit)
REDDIT2015_CHECKSUMS = pathlib.Path(__file__).resolve().parent / "reddit2015_checksums.tsv"
REDDIT2015_FILES = ("train.jsonl.gz", "validation.jsonl.gz")


class SourceUnavailableError(sources.DataError):
  """A source can neither be downloaded nor read locally; names the setting that fixes it."""


class Reddit2015(_InMemoryBuilder):
  """Reddit reply threads of Feb-Apr 2015 from 14 subreddits: the 260 daily files of
  github.com/leahrnh/reddit_corpus (commit bedbf66) listed with their sizes and SHA-256 in
  ``reddit2015_checksums.tsv``, rebuilt into conversations by ``reddit_corpus.rebuild``. With
  ``source_dir`` (gin ``REDDIT2015_DIR``) it reads that rebuild's ``train.jsonl.gz`` and
  ``validation.jsonl.gz`` from a local directory instead (CI's: ``../shared/data/reddit2015``)."""
  _checksums_path = REDDIT2015_CHECKSUMS  # TFDS verifies every download against it.

  def __init__(self, *, source_dir: Optional[str] = None, **kwargs):
    super().__init__(**kwargs)
    self.source_dir = pathlib.Path(source_dir).expanduser() if source_dir else None

  def _read_groups(self, stats, dl_manager):
    if self.source_dir is None:
      return _downloaded_reddit2015(dl_manager, self._checksums_path, self._data_dir_root, stats)
    return reddit2015_groups(self.source_dir, self.skip_malformed, stats)


def reddit2015_groups(source_dir: pathlib.Path, skip_malformed: bool,
                      stats: dict) -> dict[str, list[list[Message]]]:
  """reddit2015's conversations from a local copy of the rebuild's JSONL files."""
  missing = [f for f in REDDIT2015_FILES if not (source_dir / f).is_file()]
  if missing:
    raise SourceUnavailableError(
        f"REDDIT2015_DIR={source_dir} lacks {' and '.join(missing)}; pass the directory that "
        f"holds both (a copy of shared/data/reddit2015, or what python -m "
        f"meena_tasks.reddit_corpus writes)")
  return jsonl_groups("reddit2015", {f.split(".")[0]: [str(source_dir / f)]
                                     for f in REDDIT2015_FILES}, skip_malformed, stats)


def _downloaded_reddit2015(dl_manager, checksums_path, data_dir,
                          stats) -> dict[str, list[list[Message]]]:
  """The raw daily files, downloaded (or found in TFDS's manual directory) and rebuilt."""
  urls = {info.filename: url for url, info in
          tfds.download.checksums.load_url_infos(checksums_path).items()}
  manual_dir = storage.path(data_dir) / "downloads" / "manual"
  try:
    if not all((manual_dir / name).is_file() for name in urls):
      # TFDS retries each of 260 files with backoff: offline, that is many minutes of warnings.
      _check_reachable(next(iter(urls.values())))
    paths = dl_manager.download(urls)
  except Exception as error:  # pylint: disable=broad-except
    # Unreachable host, HTTP error or a changed file (NonMatchingChecksumError): one line.
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise SourceUnavailableError(
        f"reddit2015: cannot download the {len(urls)} files of {RAW_REDDIT2015[0]} at commit "
        f"{RAW_REDDIT2015[1][:7]} ({cause}); pass a local copy, --gin.REDDIT2015_DIR=DIR "
        f"(prepare: --reddit2015_dir=DIR) with DIR holding train.jsonl.gz and "
        f"validation.jsonl.gz, or put the files named in "
        f"{checksums_path.name} into {manual_dir}") from None
  conversations_by_split = reddit_corpus.rebuild(paths)
  for split in conversations_by_split:
    stats.setdefault(split, FilterStatistics())
  return {split: [conversations.chain(c["id"], c["turns"]) for c in convs]
          for split, convs in conversations_by_split.items()}


def _check_reachable(url: str, timeout_s: float = 10):
  """Raises ``OSError`` naming the host when a TCP connection to ``url``'s host fails."""
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
  except OSError as error:
    raise OSError(f"{parts.hostname}:{port} is unreachable: {error}") from None


@dataclasses.dataclass
class PushshiftConfig(tfds.core.BuilderConfig):
  """Pushshift dumps: ``RC_*.zst`` comment files and optional ``RS_*.zst`` submissions."""
  comment_files: tuple = ()
  submission_files: tuple = ()


class PushshiftReddit(_ConversationBuilder):
  """Reddit comment trees rebuilt from Pushshift monthly dumps; every reply with its ancestors
  becomes an example. Trees are split 90/5/5 by a hash of their submission id. The dumps come
  from a config (``PushshiftConfig``) or, for the ``default`` config the trainer reads, from
  ``comment_files`` / ``submission_files`` (``python -m meena_jax prepare`` passes them).

  Prepared by an Apache Beam pipeline (``beam_pipeline``; the ``[beam]`` extra): on the
  DirectRunner by default, on Dataflow, Flink or Spark with ``--beam_pipeline_options``. Its
  examples are written once under ``<data_dir>/downloads/pushshift_examples/`` (a restarted
  prepare reuses a finished run), then TFDS writes them as the dataset, in the same pipeline
  options, and the intermediate files are deleted."""
  BUILDER_CONFIGS = [PushshiftConfig(name="default")]

  def __init__(self, *, comment_files=(), submission_files=(), **kwargs):
    super().__init__(**kwargs)
    self.comment_files = tuple(comment_files) or self.builder_config.comment_files
    self.submission_files = tuple(submission_files) or self.builder_config.submission_files

  def _download_and_prepare(self, dl_manager, download_config):  # pylint: disable=arguments-differ
    if importlib.util.find_spec("apache_beam") is None:
      raise SourceUnavailableError("pushshift_reddit is prepared by an Apache Beam pipeline, "
                                   "which is not installed: pip install 'meena_jax[beam]'")
    super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager, pipeline):  # pylint: disable=arguments-differ
    del dl_manager
    if not self.comment_files:
      raise SourceUnavailableError(
          f"pushshift_reddit is not prepared in {self._data_dir_root} and no comment files "
          f"were given; prepare it first: python -m meena_jax prepare pushshift_reddit "
          f"--data_dir {self._data_dir_root} --comment_files RC_YYYY-MM.zst ...")
    for path in self.comment_files + self.submission_files:
      if not storage.path(path).exists():
        raise SourceUnavailableError(f"pushshift_reddit: dump {path} does not exist")
    from meena_tasks import beam_pipeline  # pylint: disable=import-outside-toplevel
    settings = beam_pipeline.Settings(
        comment_files=tuple(map(str, self.comment_files)),
        submission_files=tuple(map(str, self.submission_files)),
        skip_malformed=self.skip_malformed, vocab_path=os.fspath(self.vocab_file),
        train_vocab=not self.vocab_file.exists(), vocab_size=self.vocab_size,
        vocab_sample=self.vocab_sample_size)
    self._examples_dir = self._pipeline_dir(settings)
    summary = beam_pipeline.run(settings, self._examples_dir, pipeline.options)
    self._write_statistics(summary["statistics"])
    if not any(summary["examples"].values()):
      self._no_examples(summary["statistics"])
    # Splits without examples are left out (TFDS refuses an empty split); their statistics
    # still say why.
    import apache_beam as beam  # pylint: disable=import-outside-toplevel
    return {split: (pipeline | f"Read{split}" >> beam_pipeline.read_examples(
        self._examples_dir, split) | f"Features{split}" >> beam.Map(_features))
            for split, count in summary["examples"].items() if count}

  def _pipeline_dir(self, settings) -> str:
    """Where the pipeline's examples go: named by everything that determines them."""
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:12]
    return os.fspath(storage.path(self._data_dir_root) / "downloads" / "pushshift_examples" /
                     f"{self.builder_config.name}-{digest}")

  def _process_pipeline_result(self, pipeline_result):
    del pipeline_result  # TFDS has written every split: the intermediate examples can go.
    storage.remove_tree(self._examples_dir)


def _features(item):
  """``(id, Example)`` -> TFDS's ``(key, feature dict)``."""
  key, ex = item
  return key, {"id": ex.id, "context": list(ex.context), "response": ex.response,
               "context_speakers": list(ex.context_speakers),
               "response_speaker": ex.response_speaker}


class NoExamplesError(sources.DataError):
  """A source gave no (context, response) example; the message carries the filter counts."""


def _nonzero(counts: dict, prefix: str = "") -> str:
  """``{"messages_in": 3, "removed": {"url": 2}}`` -> ``messages_in 3, removed url 2``."""
  parts = []
  for key, value in counts.items():
    if isinstance(value, dict):
      inner = _nonzero(value, f"{prefix}{key} ")
      parts += [inner] if inner else []
    elif value:
      parts.append(f"{prefix}{key} {value}")
  return ", ".join(parts)


def cleaned_texts(groups: Iterable[list[Message]]) -> Iterable[str]:
  """The cleaned text of every message (what a vocabulary is trained on)."""
  for group in groups:
    for m in conversations.clean_messages(group):
      if m is not None:
        yield m.text


# The vocabulary command line's sources: each returns its cleaned train-split texts
# (reddit2015's from a local copy: its download belongs to the builder).
TRAIN_TEXTS = {
    "chitchat": lambda source_dir: cleaned_texts(chitchat_groups()["train"]),
    "reddit2015": lambda source_dir: cleaned_texts(reddit2015_groups(
        pathlib.Path(source_dir), False, {})["train"]),
}
