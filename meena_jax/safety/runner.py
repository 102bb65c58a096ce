"""Answering a suite with the batch responder, resumably.

Each answer is one JSON line appended to the output (flushed and fsynced per batch), keyed by
the prompt's id: a rerun after a crash or Ctrl-C skips the ids already there and loses nothing
but the batch in flight (a half-written last line is cut off first). Every record carries what
is needed to compare runs: the search and its settings, the checkpoint and its step, the
sampling seed, the prompt's token count and whether it was cut to the context limit.

An optional input filter screens prompts before the model sees them; a screened prompt gets a
fixed refusal and ``filtered`` names the reason. Results with a filter describe the system
(model + filter), not the model, and the report says so.
"""
import dataclasses
import json
import os
import pathlib
import re
from typing import Optional, Sequence

from meena_jax import jsonl

FILTER_REPLY = "I can't help with that."


class RunError(ValueError):
  """Input that cannot be answered (names the file and line)."""


class InputFilter:
  """Screens prompts: ``profanity`` (alt-profanity-check, probability >= threshold) and/or a
  blocklist (case-insensitive whole-word terms, one a line)."""

  def __init__(self, profanity: bool = False, blocklist: Optional[str] = None,
               threshold: float = 0.5):
    self.profanity, self.threshold = profanity, threshold
    self.terms = []
    if blocklist:
      with open(blocklist, encoding="utf-8") as f:
        self.terms = [t.strip() for t in f if t.strip() and not t.startswith("#")]
    self._pattern = (re.compile(r"\b(" + "|".join(re.escape(t) for t in self.terms) + r")\b",
                                re.IGNORECASE) if self.terms else None)
    self.name = " + ".join(([f"profanity >= {threshold}"] if profanity else [])
                           + ([f"blocklist {blocklist} ({len(self.terms)} terms)"]
                              if blocklist else []))

  def screen(self, prompts: Sequence[str]) -> list:
    """The reason each prompt is blocked, or None."""
    reasons = [None] * len(prompts)
    if self._pattern is not None:
      for i, prompt in enumerate(prompts):
        match = self._pattern.search(prompt)
        if match:
          reasons[i] = f"blocklist term {match.group(0).lower()!r}"
    if self.profanity and prompts:
      from profanity_check import predict_prob  # pylint: disable=import-outside-toplevel
      for i, p in enumerate(predict_prob(list(prompts))):
        if reasons[i] is None and p >= self.threshold:
          reasons[i] = f"profanity probability {p:.2f}"
    return reasons


def answered_ids(path) -> set:
  """Ids already in an output file; a last line cut by a crash is removed from the file."""
  path = pathlib.Path(path)
  if not path.exists():
    return set()
  data = path.read_bytes()
  if data and not data.endswith(b"\n"):
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
      f.truncate(keep)
    data = data[:keep]
  ids = set()
  for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
    if line.strip():
      try:
        ids.add(json.loads(line)["id"])
      except (json.JSONDecodeError, KeyError, TypeError):
        raise RunError(f"{path}:{number}: not an answer record; move the file aside or pass "
                       "another --output") from None
  return ids


def read_benign(path, limit: int) -> list:
  """Benign prompts for over-refusal: the contexts of a ``{"context": [...]}`` JSONL file
  (held-out conversation turns, as the chat's batch mode reads them), first ``limit``."""
  from meena_jax import chat  # pylint: disable=import-outside-toplevel
  rows = []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      if len(rows) >= limit:
        break
      if raw.strip():
        where = f"{path}:{number}"
        context = chat.parse_context(chat.decode_line(raw, where), where)
        if not context:
          raise RunError(f"{where}: empty context")
        rows.append({"id": f"benign-{number}", "category": "benign", "style": "",
                     "technique": "", "testcase": context[-1], "context": context,
                     "benign": True})
  return rows


def run(responder, rows: Sequence[dict], output, *, mode: str = "sample", system: str = "model",
        checkpoint: Optional[str] = None, checkpoint_step: Optional[int] = None, seed: int = 0,
        input_filter: Optional[InputFilter] = None, progress: bool = True) -> dict:
  """Answers the rows of ``rows`` not yet in ``output``; returns counts."""
  import tqdm  # pylint: disable=import-outside-toplevel
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
  done = answered_ids(output)
  todo = [row for row in rows if row["id"] not in done]
  settings = {"mode": mode, "decoding": dataclasses.asdict(responder.config),
              "context_length": responder.context_length, "checkpoint": checkpoint,
              "checkpoint_step": checkpoint_step, "seed": seed, "system": system,
              "input_filter": input_filter.name if input_filter else None}
  counts = {"answered": 0, "skipped": len(rows) - len(todo), "truncated": 0, "filtered": 0}
  with open(output, "a", encoding="utf-8") as out, tqdm.tqdm(
      total=len(todo), desc=f"answering ({mode})", unit="prompt", disable=not progress) as bar:
    for start in range(0, len(todo), responder.batch_size):
      batch = todo[start:start + responder.batch_size]
      contexts = [row.get("context") or [row["testcase"]] for row in batch]
      reasons = input_filter.screen([row["testcase"] for row in batch]) if input_filter else [
          None] * len(batch)
      encoded = seqio_tasks.tokenize_contexts(
          [c[-responder.context_turns:] for c in contexts], responder.vocabulary,
          responder.context_length)
      ask = [i for i, reason in enumerate(reasons) if reason is None]
      replies = dict(zip(ask, responder.respond([contexts[i] for i in ask], mode) if ask
                         else []))
      for i, row in enumerate(batch):
        full_length = encoded[i][1]
        record = {k: row[k] for k in ("id", "category", "style", "technique") if k in row}
        record.update({"prompt": row["testcase"], "intent": row.get("intent"),
                       "response": replies[i].text if i in replies else FILTER_REPLY,
                       "prompt_tokens": full_length,
                       "truncated": full_length > responder.context_length,
                       "filtered": reasons[i], "notices": replies[i].notices if i in replies
                       else [], **settings})
        if row.get("benign"):
          record.update({"benign": True, "context": row["context"]})
        counts["truncated"] += record["truncated"]
        counts["filtered"] += reasons[i] is not None
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
      out.flush()
      os.fsync(out.fileno())
      counts["answered"] += len(batch)
      bar.update(len(batch))
  return counts


def read_records(path) -> list:
  """JSONL records (answers, judged answers), with errors naming the line."""
  records = []
  for where, record in jsonl.read(path, RunError):
    if not isinstance(record, dict) or "id" not in record:
      raise RunError(f'{where}: expected an object with an "id"')
    records.append(record)
  return records
