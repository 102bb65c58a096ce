"""peer-bench/v1 records: the schema `../shared/bench/peers/` prints, with ``peer`` = meena_jax.

Every bench script builds its ``results`` dict and calls ``emit``; one JSON object per line goes
to stdout and, with ``--jsonl``, is appended to a file that ``table.py`` renders beside the peer.
"""
import resource
import statistics


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


def emit(mode: str, label: str, config: dict, results: dict, jsonl: str = None) -> dict:
  """Prints the record (and appends it to ``jsonl``): ``meena_jax.records.emit``."""
  from meena_jax import records  # pylint: disable=import-outside-toplevel
  return records.emit(mode, label, config, results, jsonl)
