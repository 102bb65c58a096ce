"""peer-bench/v1 records: the schema `../shared/bench/peers/` prints, with ``peer`` = meena_jax.

Every bench script builds its ``results`` dict and calls ``emit``; one JSON object per line goes
to stdout and, with ``--jsonl``, is appended to a file that ``table.py`` renders beside the peer.
"""
import datetime
import json
import os
import platform
import resource
import statistics
import sys

SCHEMA = "peer-bench/v1"
PEER = "meena_jax"


def add_shape_flags(parser, **defaults):
  """The peer's model and sequence flags (``--d-model``, ``--layers-enc``, ...) plus
  ``--block-type``, with per-script ``defaults`` (e.g. ``d_model=256``)."""
  flags = {"label": "tiny", "block_type": "evolved", "d_model": 256, "layers_enc": 2,
           "layers_dec": 4, "heads": 4, "d_ff": 1024, "vocab": 8000, "ctx_len": 128,
           "resp_len": 128}
  flags.update(defaults)
  for name, default in flags.items():
    option = "--" + name.replace("_", "-")
    if name == "block_type":
      parser.add_argument(option, default=default, choices=("evolved", "transformer"))
    else:
      parser.add_argument(option, type=type(default), default=default)


def model_config(args, dropout_rate: float):
  """The ``ModelConfig`` of ``add_shape_flags``' flags."""
  from meena_jax.config import ModelConfig  # pylint: disable=import-outside-toplevel
  return ModelConfig(block_type=args.block_type, vocab_size=args.vocab, d_model=args.d_model,
                     num_heads=args.heads, d_ff=args.d_ff, num_encoder_layers=args.layers_enc,
                     num_decoder_layers=args.layers_dec, dropout_rate=dropout_rate)


def shape_config(args) -> dict:
  """The shape flags as the ``config`` keys of a peer-bench record."""
  return {k: getattr(args, k) for k in ("d_model", "layers_enc", "layers_dec", "heads", "d_ff",
                                        "vocab", "ctx_len", "resp_len", "block_type")}


def summary(seconds: list) -> dict:
  """median/min/max/mean/n/all of a list of timings, as the peer reports them."""
  return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
          "mean": statistics.fmean(seconds), "n": len(seconds),
          "all": [round(s, 6) for s in seconds]}


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions() -> dict:
  import jax
  import numpy
  found = {"python": platform.python_version(), "jax": jax.__version__,
           "numpy": numpy.__version__}
  for name in ("flax", "optax", "seqio", "tensorflow", "sentencepiece"):
    module = sys.modules.get(name)
    if module is not None:
      found[name] = getattr(module, "__version__", "?")
  return found


def machine() -> dict:
  return {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
          "platform": platform.platform()}


def emit(mode: str, label: str, config: dict, results: dict, jsonl: str = None) -> dict:
  record = {"schema": SCHEMA, "peer": PEER, "mode": mode, "label": label,
            "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "config": dict(config, mode=mode, label=label), "results": results,
            "versions": versions(), "machine": machine()}
  line = json.dumps(record)
  print(line)
  if jsonl:
    with open(jsonl, "a") as f:
      f.write(line + "\n")
  return record
