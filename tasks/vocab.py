"""SentencePiece BPE vocabularies trained from a source's train split.

  python -m meena_tasks.vocab --source=reddit2015 --source_dir=../shared/data/reddit2015 \
      --vocab_size=8000 --output=/tmp/reddit2015

Ids follow SeqIO: 0 padding, 1 EOS, 2 unknown; byte fallback is on, so any text round-trips;
the turn separator ``TURN_SEPARATOR`` is a user-defined piece (one id, never split). Training is
deterministic: sentences are sampled by hash, not at random, and fed in a fixed order.

Normalisation keeps text as written (no NFKC: case, width and compatibility forms stay
distinct), except that the invisible characters in ``DROPPED_CHARACTERS`` are removed. That one
rule also gives the model a compiled normaliser: with none (SentencePiece's ``identity``),
tensorflow-text's SentencePiece prints "precompiled_charsmap is empty" (``normalizer.cc``) each
time a tokenizer is built, dozens of lines a run, which nothing can silence.
"""
import argparse
import hashlib
import io
import re
import pathlib
import tempfile
from typing import Iterable

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from meena_jax import storage

TURN_SEPARATOR = "<turn>"
# Zero-width no-break space (byte-order mark) and zero-width space: no meaning, split words.
DROPPED_CHARACTERS = ("\ufeff", "\u200b")
MAX_TRAINING_SENTENCES = 1_000_000


def sample_key(text: str, seed: int = 0) -> tuple:
  """Where ``text`` ranks in the sample: the ``max_sentences`` distinct non-empty texts with
  the smallest keys are the sample, in key order (a Beam pipeline draws the same one with
  ``Top.Smallest``)."""
  return hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], text


def _sampled(texts: Iterable[str], max_sentences: int, seed: int) -> list[str]:
  """A deterministic sample of at most ``max_sentences`` texts: the smallest seeded hashes."""
  keyed = sorted(sample_key(t, seed) for t in set(texts) if t)
  return [t for _, t in keyed[:max_sentences]]


def train(texts: Iterable[str], model_path, vocab_size: int = 8000, seed: int = 0,
          max_sentences: int = MAX_TRAINING_SENTENCES) -> storage.Path:
  """Trains a BPE model on ``texts`` (a sample of at most ``max_sentences`` of them) and
  writes ``model_path`` (``.model``, local or ``gs://``) atomically."""
  return train_on_sample(_sampled(texts, max_sentences, seed), model_path, vocab_size)


def train_on_sample(sentences: list, model_path, vocab_size: int = 8000) -> storage.Path:
  """Trains a BPE model on ``sentences`` (the sample, in ``sample_key`` order) and writes
  ``model_path`` atomically."""
  model_path = storage.path(model_path)
  if not sentences:
    raise ValueError(f"no text to train the vocabulary {model_path} on")
  model = io.BytesIO()
  with tempfile.TemporaryDirectory() as scratch:
    rules = pathlib.Path(scratch) / "normalization.tsv"  # SentencePiece reads rules from a file.
    rules.write_text("".join(f"{ord(c):04X}\t\n" for c in DROPPED_CHARACTERS))
    try:
      _train_bpe(sentences, model, vocab_size, rules)
    except RuntimeError as error:
      most = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)",
                       str(error))
      if not most:
        raise
      raise ValueError(f"vocabulary {model_path}: {len(sentences):,} sampled texts allow at "
                       f"most {most[1]} pieces, not vocab_size={vocab_size}; choose a smaller "
                       f"vocab_size (prepare --vocab_size, gin VOCAB_SIZE)") from None
  # The model records the rules' (temporary) path: cleared, so the bytes depend on the text only.
  proto = sentencepiece_model_pb2.ModelProto.FromString(model.getvalue())
  proto.normalizer_spec.ClearField("normalization_rule_tsv")
  if not storage.is_remote(model_path):
    model_path.parent.mkdir(parents=True, exist_ok=True)
  storage.write_bytes(model_path, proto.SerializeToString())
  return model_path


def _train_bpe(sentences: list, model: io.BytesIO, vocab_size: int, rules: pathlib.Path):
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, model_type="bpe",
      vocab_size=vocab_size, byte_fallback=True, character_coverage=0.9995,
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, user_defined_symbols=[TURN_SEPARATOR],
      input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
      max_sentence_length=8192, split_digits=True, normalization_rule_tsv=str(rules),
      remove_extra_whitespaces=True, minloglevel=2)


def ensure(texts_fn, model_path, vocab_size: int, seed: int = 0,
           max_sentences: int = MAX_TRAINING_SENTENCES) -> storage.Path:
  """The vocabulary at ``model_path``, trained from a sample of at most ``max_sentences`` of
  ``texts_fn()`` on first use."""
  model_path = storage.path(model_path)
  if not model_path.exists():
    train(texts_fn(), model_path, vocab_size, seed, max_sentences)
  return model_path


def main(argv=None):
  from meena_tasks import builders  # Reads the sources; only the command line needs it.
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", required=True, choices=sorted(builders.TRAIN_TEXTS))
  parser.add_argument("--source_dir", help="reddit2015: the directory holding train.jsonl.gz")
  parser.add_argument("--vocab_size", type=int, default=8000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", required=True, help="model path prefix (writes .model)")
  args = parser.parse_args(argv)
  if args.source == "reddit2015" and not args.source_dir:
    parser.error("--source=reddit2015 reads a local copy: pass --source_dir")
  path = train(builders.TRAIN_TEXTS[args.source](args.source_dir), f"{args.output}.model",
               args.vocab_size, args.seed)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
