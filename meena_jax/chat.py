"""Talk to a trained model: interactive chat, batch JSONL, a JSON-lines server on stdio, prompts.

  python -m meena_jax chat --gin_file=gin/runs/et_tiny_chitchat.gin \
      --gin_file=gin/decoding/chat.gin --gin.CHECKPOINT=runs/demo          # interactive
  ... --input contexts.jsonl --output responses.jsonl                      # batch, progress bar
  ... --stdio            # {"context": ["turn", ...]} per stdin line -> {"response": "..."}
  ... --prompt "Hi!" --prompt "What do you do?"   # sample-and-rank next to beam, then exit

Contexts are turns joined with ``<turn>`` and cut to their most recent tokens by the training
task's own preprocessors (``meena_tasks.seqio_tasks``), so the model reads what it was trained
on. Answers come from ``decoding.py``; sample-and-rank answers pass the repetition filter.
"""
import contextlib
import dataclasses
import json
import sys
import time
from typing import Optional, Sequence, TextIO

import jax
import numpy as np

from meena_jax import decoding, partitioning, repetition, storage
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq

MODES = ("sample", "beam")


@dataclasses.dataclass
class Reply:
  """One answer: its text, the search that made it, seconds taken, and what the user should
  know (a cut context, every candidate filtered)."""
  text: str
  mode: str
  seconds: float
  notices: list


class Responder:
  """Answers batches of conversations with compiled sample-and-rank or beam search.

  Batches are padded to ``batch_size`` contexts of ``context_length`` tokens, so each search
  compiles once. Sampling keys derive from ``seed`` and a call counter. With a ``mesh`` (the
  parameters placed on it) contexts split over ``data`` and weights over ``model``.
  """

  def __init__(self, model: Seq2Seq, params, vocabulary, config: decoding.DecodingConfig, *,
               context_length: int = 128, context_turns: int = 7, batch_size: int = 8,
               seed: int = 0, mesh=None, compiler_options: Optional[dict] = None):
    self.vocabulary, self.config = vocabulary, config
    self.context_length, self.context_turns, self.batch_size = (context_length, context_turns,
                                                                batch_size)
    self._params, self._mesh = params, mesh
    options = dict(compiler_options=compiler_options)
    self._search = {"sample": decoding.sampler(model, config, mesh, **options),
                    "beam": decoding.beam(model, config, mesh, **options)}
    self._key, self._calls = jax.random.key(seed), 0

  def respond(self, contexts: Sequence[Sequence[str]], mode: str = "sample") -> list:
    """One ``Reply`` per context (a list of turns, oldest first; the last ``context_turns``
    are read)."""
    if mode not in MODES:
      raise ValueError(f"mode {mode!r}: choose one of {MODES}")
    replies = []
    for start in range(0, len(contexts), self.batch_size):
      replies += self._respond_batch([list(c)[-self.context_turns:] for c in
                                      contexts[start:start + self.batch_size]], mode)
    return replies

  def _respond_batch(self, contexts, mode):
    started = time.perf_counter()
    from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel  # TensorFlow.
    encoded = seqio_tasks.tokenize_contexts(contexts, self.vocabulary, self.context_length)
    tokens = np.zeros((self.batch_size, self.context_length), np.int32)
    for row, (ids, _) in enumerate(encoded):
      tokens[row, :len(ids)] = ids
    scope = partitioning.activate(self._mesh) if self._mesh else contextlib.nullcontext()
    with scope:  # The activation constraints apply on the mesh.
      if mode == "sample":
        self._calls += 1
        result = self._search[mode](self._params, tokens,
                                    jax.random.fold_in(self._key, self._calls))
      else:
        result = self._search[mode](self._params, tokens)
    result = jax.device_get(result)
    replies = []
    for row, turns in enumerate(contexts):
      notices = []
      full_length = encoded[row][1]
      if full_length > self.context_length:
        notices.append(f"context cut to its most recent {self.context_length} tokens "
                       f"(it had {full_length})")
      if mode == "sample":
        choice = repetition.choose(
            result.tokens[row], result.scores[row],
            [self.vocabulary.encode(turn) for turn in turns], self.config.repetition_ngram)
        if choice.fell_back:
          notices.append(f"all {len(choice.dropped)} candidates repeat an earlier turn or "
                         f"themselves; answering with the best of them anyway")
        ids = choice.tokens
      else:
        ids = repetition.response_tokens(result.tokens[row, 0])
      replies.append(Reply(self.vocabulary.decode(ids), mode, 0.0, notices))
    seconds = (time.perf_counter() - started) / max(len(contexts), 1)
    for reply in replies:
      reply.seconds = seconds
    return replies


def load_responder(*, model_config: ModelConfig, checkpoint: str,
                   decoding_config: decoding.DecodingConfig, task=None,
                   vocab_file: Optional[str] = None, context_length: int = 128,
                   context_turns: int = 7, batch_size: int = 8, seed: int = 0,
                   mesh_data: int = -1, mesh_model: int = 1,
                   compiler_options: Optional[dict] = None,
                   checkpoint_subtree: str = "") -> Responder:
  """A ``Responder`` over ``checkpoint``'s parameters (a run directory or one of its
  ``checkpoints/<step>``; ``checkpoint_subtree``: where the train state sits in a run that
  saves several, e.g. ``policy`` for a PPO run). The vocabulary is ``vocab_file``'s, else the SeqIO ``task``'s.
  The parameters and the searches live on a ``(mesh_data, mesh_model)`` mesh of this host's
  devices (``python -m meena_jax compile`` compiles exactly this sampler for a TPU host);
  ``compiler_options`` are XLA's for this platform (the commands pass
  ``cli.decoding_compiler_options()``)."""
  import seqio  # pylint: disable=import-outside-toplevel
  from meena_jax import checkpoints  # pylint: disable=import-outside-toplevel
  if vocab_file:
    vocabulary = seqio.SentencePieceVocabulary(vocab_file)
  elif task is not None:
    vocabulary = task.output_features["inputs"].vocabulary
  else:
    raise ValueError("load_responder needs a task or a vocab_file for its vocabulary")
  if vocabulary.vocab_size > model_config.vocab_size:
    raise ValueError(f"the vocabulary has {vocabulary.vocab_size} pieces but "
                     f"ModelConfig.vocab_size is {model_config.vocab_size}")
  model = Seq2Seq(model_config)
  mesh = partitioning.make_mesh(mesh_data, mesh_model, jax.local_devices())
  params = checkpoints.load_params(checkpoint, model, mesh, checkpoint_subtree)
  return Responder(model, params, vocabulary, decoding_config, context_length=context_length,
                   context_turns=context_turns, batch_size=batch_size, seed=seed, mesh=mesh,
                   compiler_options=compiler_options)


# ----------------------------------------------------------------------------------------------
# Input: bytes that must be UTF-8, lines that must be JSON.


class BadLine(ValueError):
  """An input line that cannot be read; the message names the line."""


def decode_line(raw: bytes, where: str) -> str:
  try:
    return raw.decode("utf-8").rstrip("\r\n")
  except UnicodeDecodeError as error:
    raise BadLine(f"{where}: invalid UTF-8 (byte 0x{raw[error.start]:02x} at column "
                  f"{error.start + 1})") from None


def parse_context(text: str, where: str) -> list:
  try:
    record = json.loads(text)
  except json.JSONDecodeError as error:
    raise BadLine(f"{where}: not JSON ({error.msg})") from None
  context = record.get("context") if isinstance(record, dict) else None
  if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
    raise BadLine(f'{where}: expected {{"context": ["turn 1", "turn 2", ...]}}')
  return context


# ----------------------------------------------------------------------------------------------
# The four ways to talk.


def interactive(responder: Responder, stdin, out: TextIO, mode: str = "sample"):
  """A conversation on a terminal: the last ``context_turns`` turns are the context."""
  history, line_number = [], 0
  out.write("Type a message; /sample or /beam switch the search, /reset forgets the "
            "conversation, /quit or Ctrl-D leaves.\n")
  while True:
    out.write("you> ")
    out.flush()
    raw = stdin.readline()
    line_number += 1
    if not raw:  # Ctrl-D.
      out.write("\n")
      return
    try:
      text = decode_line(raw, f"line {line_number}").strip()
    except BadLine as error:
      out.write(f"{error}; please type it again\n")
      continue
    if not text:
      out.write("(empty message: type something, or /quit)\n")
      continue
    if text == "/quit":
      return
    if text == "/reset":
      history = []
      out.write("(conversation reset)\n")
      continue
    if text in ("/sample", "/beam"):
      mode = text[1:]
      out.write(f"(answering with {'sample-and-rank' if mode == 'sample' else 'beam search'})\n")
      continue
    history = (history + [text])[-responder.context_turns:]
    reply = responder.respond([history], mode)[0]
    for notice in reply.notices:
      out.write(f"({notice})\n")
    out.write(f"meena> {reply.text}    [{reply.seconds:.2f} s, {mode}]\n")
    history = (history + [reply.text])[-responder.context_turns:]


def serve_stdio(responder: Responder, stdin, out: TextIO, mode: str = "sample"):
  """One ``{"response": ...}`` JSON line per input line, flushed at once (``{"error": ...}``
  for a line that cannot be read), for programs that drive the model, like the SSA app."""
  for line_number, raw in enumerate(iter(stdin.readline, b""), start=1):
    try:
      context = parse_context(decode_line(raw, f"line {line_number}"), f"line {line_number}")
      reply = responder.respond([context], mode)[0]
      record = {"response": reply.text}
      if reply.notices:
        record["notices"] = reply.notices
    except BadLine as error:
      record = {"error": str(error)}
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def answer_file(responder: Responder, input_path: str, output_path: str, mode: str = "sample",
                progress: bool = True) -> int:
  """Answers every ``{"context": [...]}`` line of ``input_path`` into ``output_path`` (the
  input record plus ``response``; either may be ``gs://``). The answers go to
  ``<output_path>.partial``, which replaces ``output_path`` only when every context is
  answered: a bad line, an input without contexts or a failure half-way leaves an existing
  ``output_path`` as it was."""
  import tqdm  # pylint: disable=import-outside-toplevel
  raw_lines = storage.path(input_path).read_bytes().splitlines()
  contexts = [parse_context(decode_line(raw, f"{input_path}:{n}"), f"{input_path}:{n}")
              for n, raw in enumerate(raw_lines, start=1) if raw.strip()]
  if not contexts:
    raise BadLine(f"{input_path}: no contexts to answer (the file has no non-empty line); "
                  f"{output_path} was not touched")
  partial = storage.path(f"{output_path}.partial")
  try:
    with partial.open("w") as out, tqdm.tqdm(
        total=len(contexts), desc=mode, unit="context", disable=not progress) as bar:
      for start in range(0, len(contexts), responder.batch_size):
        batch = contexts[start:start + responder.batch_size]
        for context, reply in zip(batch, responder.respond(batch, mode)):
          record = {"context": context, "response": reply.text, "mode": mode}
          if reply.notices:
            record["notices"] = reply.notices
          out.write(json.dumps(record, ensure_ascii=False) + "\n")
        bar.update(len(batch))
    partial.replace(storage.path(output_path))
  finally:
    if partial.exists():
      partial.unlink()
  return len(contexts)


def compare_prompts(responder: Responder, prompts: Sequence[str], out: TextIO):
  """Each prompt's sample-and-rank answer next to its beam-search answer."""
  for prompt, sampled, beamed in zip(prompts, responder.respond([[p] for p in prompts]),
                                     responder.respond([[p] for p in prompts], "beam")):
    out.write(f"> {prompt}\n  sample-and-rank: {sampled.text}\n  beam search:     "
              f"{beamed.text}\n")
    for notice in sampled.notices + beamed.notices:
      out.write(f"  ({notice})\n")
  out.flush()


if __name__ == "__main__":  # python -m meena_jax chat: an alias of the edge.
  from meena_jax import commands  # pylint: disable=import-outside-toplevel
  commands.main(["chat", *sys.argv[1:]])
