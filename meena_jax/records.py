"""Bench records: one JSON object per line in the ``peer-bench/v1`` schema that
``../shared/bench/peers/`` prints, with ``peer`` = meena_jax, so one table shows both.

``bench/`` scripts and ``python -m meena_jax compile`` emit through ``emit``.
"""
import datetime
import json
import os
import platform
import sys
from typing import Optional

SCHEMA = "peer-bench/v1"
PEER = "meena_jax"


def versions() -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy  # pylint: disable=import-outside-toplevel
  found = {"python": platform.python_version(), "jax": jax.__version__,
           "numpy": numpy.__version__}
  for name in ("flax", "optax", "seqio", "tensorflow", "sentencepiece", "libtpu"):
    module = sys.modules.get(name)
    if module is not None:
      found[name] = getattr(module, "__version__", "?")
  return found


def machine() -> dict:
  return {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
          "platform": platform.platform()}


def emit(mode: str, label: str, config: dict, results: dict, jsonl: Optional[str] = None,
         echo: bool = True) -> dict:
  """Builds the record; prints it (``echo``) and appends it to ``jsonl`` when given."""
  record = {"schema": SCHEMA, "peer": PEER, "mode": mode, "label": label,
            "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "config": dict(config, mode=mode, label=label), "results": results,
            "versions": versions(), "machine": machine()}
  line = json.dumps(record)
  if echo:
    print(line)
  if jsonl:
    with open(jsonl, "a") as f:
      f.write(line + "\n")
  return record
