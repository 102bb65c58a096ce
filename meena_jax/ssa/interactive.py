"""Live models for interactive evaluation: any command that answers JSON lines on stdin/stdout.

The server starts each command once and keeps it running. Per bot turn it writes one line,
``{"context": ["Hi!", ...]}`` (the whole conversation so far, most recent last), and reads one
line back, ``{"response": "..."}``. A checkpoint is served by the chat module speaking this
protocol::

  --model meena='python -m meena_jax chat --gin_file=... --gin.CHECKPOINT=... --stdio'

so this module never imports the model (nor JAX). The process's stderr goes to the server's
console. A process that exits, answers with something else, or takes longer than the timeout
fails that one turn with a ``ResponderError`` (the rater sees it and may send again); the next
turn starts the command afresh, because a late answer would otherwise be read as the next one.

Conversations follow Meena's interactive evaluation: the rater opens with "Hi!" and chats for
14 to 28 turns (both sides counted), then labels every bot turn.
"""
import json
import queue
import subprocess
import threading
from typing import Optional, Sequence

OPENING = "Hi!"
MIN_TURNS = 14
MAX_TURNS = 28
MAX_MESSAGE_CHARS = 1000


class ResponderError(RuntimeError):
  """The model process failed to answer one turn; the message says how."""


class Responder:
  """One long-running model process; ``respond`` is thread-safe and serialises turns."""

  def __init__(self, name: str, argv: Sequence[str], timeout_s: float = 300.0):
    self.name, self.argv, self.timeout_s = name, list(argv), timeout_s
    self._lock = threading.Lock()
    self._process: Optional[subprocess.Popen] = None
    self._lines: "queue.Queue[Optional[str]]" = queue.Queue()

  def start(self):
    """Starts the command if it is not running (the server calls this once at start-up)."""
    with self._lock:
      self._ensure_started()

  def _ensure_started(self):
    if self._process is not None and self._process.poll() is None:
      return
    try:
      process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, encoding="utf-8", bufsize=1)
    except OSError as e:
      raise ResponderError(f"model {self.name!r}: cannot start {self.argv}: {e}") from None
    # A reader thread per process: a timed wait on a queue replaces a blocking readline.
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True,
                     name=f"responder-{self.name}").start()
    self._process, self._lines = process, lines

  def respond(self, context: Sequence[str]) -> str:
    """The model's response to ``context`` (most recent turn last)."""
    with self._lock:
      self._ensure_started()
      try:
        self._process.stdin.write(json.dumps({"context": list(context)}) + "\n")
        self._process.stdin.flush()
        line = self._lines.get(timeout=self.timeout_s)
      except queue.Empty:
        self._stop()
        raise ResponderError(f"model {self.name!r} gave no answer within {self.timeout_s:g} s "
                             f"(restarted)") from None
      except OSError as e:  # Broken pipe: the process is gone.
        code = self._stop()
        raise ResponderError(f"model {self.name!r} is not running (exit code {code}): {e}") \
            from None
      if line is None:
        code = self._stop()
        raise ResponderError(f"model {self.name!r} exited (code {code}) without answering")
      try:
        response = json.loads(line)["response"]
        if not isinstance(response, str):
          raise TypeError
      except (ValueError, KeyError, TypeError):
        self._stop()
        raise ResponderError(f'model {self.name!r} answered {line.strip()[:80]!r}, not a '
                             f'JSON line {{"response": "..."}} (restarted)') from None
      return response

  def _stop(self) -> Optional[int]:
    process, self._process = self._process, None
    if process is None:
      return None
    if process.poll() is None:
      process.kill()
    return process.wait()

  def close(self):
    with self._lock:
      if self._process is not None and self._process.stdin:
        try:
          self._process.stdin.close()  # Lets a well-behaved model exit on end of input.
          self._process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
          pass
      self._stop()


def _pump(stream, lines: "queue.Queue[Optional[str]]"):
  """Copies a process's output lines into a queue; None marks the end."""
  for line in stream:
    lines.put(line)
  lines.put(None)
