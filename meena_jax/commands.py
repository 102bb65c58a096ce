"""Every command's ``main``: flags in, a library call, one line out. The only caller of ``cli``.

  python -m meena_jax train --gin_file=gin/runs/et_tiny_chitchat.gin --gin.MODEL_DIR=/tmp/run
  python -m meena_jax eval|chat|summary|compile|data_stats|curves ...
  python -m meena_jax posttrain|safety|ssa <subcommand> ...
  python -m meena_jax prepare reddit2015 --data_dir ~/tensorflow_datasets

``python -m meena_jax train ...`` (and the other modules' forms) still work: each library module's
``__main__`` guard forwards here. Library modules never import this module or ``cli`` at import
time, so gin stays at this edge; each command's usage is its library module's docstring.
"""
import argparse
import importlib
import logging
import os
import sys
from typing import Callable, Optional, Sequence

# TensorFlow's C++ INFO lines (CPU feature notes) are not for a user; its warnings still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from meena_jax import cli  # pylint: disable=wrong-import-position


def train(argv: Sequence[str]):
  """Parses gin flags, writes the operative config to MODEL_DIR, and trains."""
  import jax  # pylint: disable=import-outside-toplevel
  from meena_jax import train as train_lib  # pylint: disable=import-outside-toplevel
  cli.configure_logging()
  parser = argparse.ArgumentParser(prog="python -m meena_jax train", description=train_lib.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_distributed_flags(parser)
  cli.register_training()
  args = cli.parse_args(argv, train_lib.__doc__, parser)
  cli.initialize_distributed(args)
  records = cli.configured_train()
  train_records = [r for r in records if "loss" in r]
  if train_records and jax.process_index() == 0:
    last = train_records[-1]
    print(f"step {last['step']}: loss {last['loss']:.3f}, perplexity {last['perplexity']:.1f}")


def evaluate(argv: Sequence[str]):
  """Parses gin flags and ``--jsonl``/``--split``/``--output``, evaluates, prints the result."""
  import json  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from meena_jax import checkpoints, eval as eval_lib, storage
  from meena_tasks import sources  # pylint: disable=import-outside-toplevel
  cli.configure_logging()
  parser = argparse.ArgumentParser(prog="python -m meena_jax eval", description=eval_lib.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--jsonl", help="evaluate on this conversation JSONL file instead")
  parser.add_argument("--split", help="the task's split (default: evaluate_checkpoint.split)")
  parser.add_argument("--output", help="where the JSON result goes")
  parser.add_argument("--unigram", action="store_true",
                      help="also report the training split's unigram-model perplexity")
  cli.register_training()
  args = cli.parse_args(argv, eval_lib.__doc__, parser)
  overrides = {k: v for k, v in (("jsonl", args.jsonl), ("split", args.split),
                                 ("output", args.output), ("unigram", args.unigram)) if v}
  try:  # The checkpoint first: the task may have to be prepared, which takes minutes.
    checkpoints.require(cli.require("evaluate_checkpoint.checkpoint", "CHECKPOINT",
                                    "/path/to/MODEL_DIR"))
    result = cli.configured("evaluate_checkpoint", **overrides)
  except (checkpoints.CheckpointMismatchError, checkpoints.UnreadableCheckpointError,
          FileNotFoundError, sources.DataError, storage.StorageError) as error:
    raise SystemExit(f"error: {str(error).splitlines()[0]}") from None
  print(json.dumps(result, indent=2))
  line = (f"{result['task']} {result['split']}: perplexity {result['perplexity']:.2f} "
          f"({result['target_tokens']} target tokens of {result['examples']} examples), "
          f"word perplexity {result['word_perplexity']:.2f}")
  if "unigram_perplexity" in result:
    line += f"; the unigram model of the training targets: {result['unigram_perplexity']:.2f}"
  print(line)


def chat(argv: Sequence[str]):
  """Parses gin flags and the mode, loads the checkpoint, and talks."""
  # pylint: disable-next=import-outside-toplevel
  from meena_jax import chat as chat_lib, checkpoints, storage
  parser = argparse.ArgumentParser(prog="python -m meena_jax chat", description=chat_lib.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", help="JSONL of {\"context\": [...]} to answer in batches")
  parser.add_argument("--output", help="where --input's answers go (JSONL)")
  parser.add_argument("--stdio", action="store_true", help="JSON lines on stdin -> stdout")
  parser.add_argument("--prompt", action="append", default=[],
                      help="answer this one-turn prompt with both searches (repeatable)")
  parser.add_argument("--mode", choices=chat_lib.MODES, default="sample",
                      help="search to start with")
  cli.register_decoding()
  args = cli.parse_args(argv, chat_lib.__doc__, parser)
  if bool(args.input) != bool(args.output):
    raise SystemExit("--input and --output go together")
  checkpoint = cli.require("load_responder.checkpoint", "CHECKPOINT", "/path/to/MODEL_DIR")
  try:
    checkpoints.require(checkpoint)  # Before the task (its vocabulary) is prepared.
    responder = cli.configured("load_responder",
                               compiler_options=cli.decoding_compiler_options())
  except checkpoints.CheckpointMismatchError as error:
    raise SystemExit(f"checkpoint does not match the gin model: {error}") from None
  except (checkpoints.UnreadableCheckpointError, storage.StorageError) as error:
    raise SystemExit(f"error: {error}") from None
  except FileNotFoundError as error:
    raise SystemExit(str(error)) from None
  try:
    if args.prompt:
      chat_lib.compare_prompts(responder, args.prompt, sys.stdout)
    elif args.input:
      count = chat_lib.answer_file(responder, args.input, args.output, args.mode)
      print(f"wrote {count} responses to {args.output}", file=sys.stderr)
    elif args.stdio:
      chat_lib.serve_stdio(responder, sys.stdin.buffer, sys.stdout, args.mode)
    else:
      chat_lib.interactive(responder, sys.stdin.buffer, sys.stdout, args.mode)
  except chat_lib.BadLine as error:
    raise SystemExit(str(error)) from None
  except KeyboardInterrupt:
    print(file=sys.stderr)


def summary(argv: Sequence[str]):
  """The parameter table of the gin model (shapes only) and, with ``--forward``, one loss."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from meena_jax import summary as summary_lib  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(prog="python -m meena_jax summary",
                                   description=summary_lib.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--forward", action="store_true",
                      help="also initialise real weights and run one forward pass")
  args = cli.parse_args(argv, summary_lib.__doc__, parser)
  cfg = cli.model_config()
  print(summary_lib.format_parameter_table(cfg))
  if args.forward:
    loss, seconds = summary_lib.forward_check(cfg)
    print(f"forward pass on random tokens (batch 2, length 32): loss {loss:.3f} "
          f"(uniform guess: ln(vocab) = {np.log(cfg.vocab_size):.3f}), {seconds:.2f}s "
          f"including compilation")


def compile_programs(argv: Sequence[str]):
  """Compiles the run's programs for a TPU slice and prints (and records) what they cost."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from meena_jax import compile as compile_lib, records, slices
  cli.configure_logging(logging.WARNING)
  parser = argparse.ArgumentParser(prog="python -m meena_jax compile",
                                   description=compile_lib.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--accelerator_type", required=True,
                      help="the slice: v3-8 ... v3-2048, v4-N, v5p-N, v5litepod-N (v5e-N)")
  parser.add_argument("--topology", help="the chip grid, when the type does not imply one "
                                         "(e.g. v4:2x2x3)")
  parser.add_argument("--programs", default=",".join(compile_lib.PROGRAMS),
                      help=f"comma-separated subset of {','.join(compile_lib.PROGRAMS)}")
  parser.add_argument("--json", help="append the bench record (peer-bench/v1) to this file")
  parser.add_argument("--hlo_dir", help="write each program's optimised HLO text here")
  cli.register_decoding()
  args = cli.parse_args(argv, compile_lib.__doc__, parser)
  programs = [p for p in args.programs.split(",") if p]
  unknown = sorted(set(programs) - set(compile_lib.PROGRAMS))
  if unknown:
    raise SystemExit(f"--programs={args.programs}: unknown {unknown}; choose from "
                     f"{compile_lib.PROGRAMS}")
  try:
    slice_ = slices.parse_accelerator(args.accelerator_type)
    devices = slices.topology_devices(slice_, args.topology)
    settings = {**cli.bound_arguments("train", compile_lib.TRAIN_SETTINGS),
                "model_config": cli.model_config()}
    missing = [k for k in ("batch_size", "input_length", "target_length", "train_steps")
               if k not in settings]
    if missing:
      raise ValueError(f"the gin config binds no train.{missing[0]}: give a run file "
                       f"(gin/runs/...) as for meena_jax.train")
    chat_settings = cli.bound_arguments("load_responder", compile_lib.CHAT_SETTINGS)
    report = compile_lib.compile_run(
        settings, slice_, devices=devices, programs=programs,
        decoding_config=cli.configured("DecodingConfig"), chat=chat_settings,
        hlo_dir=args.hlo_dir, progress=lambda line: print(line, file=sys.stderr, flush=True))
  except (ValueError, RuntimeError) as error:
    raise SystemExit(f"error: {error}") from None
  print(compile_lib.format_report(report, settings["train_steps"]))
  config = {"accelerator_type": slice_.accelerator_type, "gin_files": args.gin_file,
            "overrides": [a for a in argv if a.startswith("--gin.")], "programs": programs,
            "model": dataclasses.asdict(settings["model_config"]),
            **{k: v for k, v in settings.items() if k != "model_config"}}
  records.emit("compile", slice_.accelerator_type, config, report, args.json, echo=False)
  if args.json:
    print(f"appended the record to {args.json}")


def data_stats(argv: Sequence[str]):
  """Length distribution and packed-row fill of the run's task (what a task file's lengths
  come from)."""
  import json  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from meena_jax import data_stats as stats_lib, storage, token_store
  cli.configure_logging()
  parser = argparse.ArgumentParser(prog="python -m meena_jax data_stats",
                                   description=stats_lib.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--split", default="train")
  parser.add_argument("--rows", help="packed row shapes INPUTS/TARGETS,... (default: the run's "
                                     "PACKED_INPUT_LENGTH/PACKED_TARGET_LENGTH)")
  parser.add_argument("--batches", type=int, default=50, help="batches packed per row shape")
  parser.add_argument("--json", help="also write the figures to this file")
  cli.register_training()
  args = cli.parse_args(argv, stats_lib.__doc__, parser)
  settings = cli.bound_arguments("train", ("input_length", "target_length", "batch_size",
                                           "packed_input_length", "packed_target_length",
                                           "packing_bins", "data_cache_dir"))
  cut = {"inputs": settings["input_length"], "targets": settings["target_length"]}
  try:
    rows = stats_lib.parse_rows(args.rows) if args.rows else [{
        "inputs": settings.get("packed_input_length", cut["inputs"]),
        "targets": settings.get("packed_target_length", cut["targets"])}]
  except ValueError as error:
    raise SystemExit(f"--rows={args.rows}: {error}") from None
  task = cli.configured("get_task")
  lengths = stats_lib.length_distribution(task, args.split)
  sources = token_store.tokenized_sources(task, args.split, cut,
                                          settings.get("data_cache_dir") or "~/tensorflow_datasets")
  fills = {}
  for shape in rows:
    try:
      fills[f"{shape['inputs']}/{shape['targets']}"] = stats_lib.packing_fill(
          sources, shape, settings.get("batch_size", 16), args.batches,
          settings.get("packing_bins", 64))
    except ValueError as error:
      raise SystemExit(f"--rows: {error}") from None
  print(f"{task.name}/{args.split}: per-example cut {cut['inputs']}/{cut['targets']}, "
        f"{settings.get('batch_size', 16)} rows a batch")
  print(stats_lib.report(lengths, cut, fills))
  if args.json:
    storage.write_text(args.json, json.dumps(
        {"task": task.name, "split": args.split, "cut": cut, "fill": fills,
         "lengths": {k: {"mean": float(v.mean()), "max": int(v.max()),
                         "truncated": float(np.mean(v > cut[k])),
                         **{f"p{p}": float(np.percentile(v, p)) for p in stats_lib.PERCENTILES}}
                     for k, v in lengths.items()}}, indent=1))


# The modules each setup.py extra brings: a command missing one names the extra to install.
EXTRA_MODULES = {"ssa": {"flask", "waitress", "krippendorff"}, "beam": {"apache_beam"},
                 "posttrain": {"rlax", "tf_keras", "tensorflow_probability"},
                 "safety": {"scipy", "sklearn", "yaml"}}


def _forward(module: str, extra: Optional[str] = None) -> Callable[[Sequence[str]], object]:
  """A command whose own ``main(argv)`` lives in ``module`` (it has subcommands or no gin);
  ``extra``: the setup.py extra its dependencies come with."""
  def run(argv):
    try:
      return importlib.import_module(module).main(list(argv))
    except ModuleNotFoundError as error:
      if extra is None or error.name.split(".")[0] not in EXTRA_MODULES[extra]:
        raise
      raise SystemExit(f"error: {module.split('.')[1]} needs {error.name}, which is not "
                       f"installed: pip install 'meena_jax[{extra}]' (make install has every "
                       f"extra)") from None
  return run


COMMANDS = {
    "train": train,
    "eval": evaluate,
    "chat": chat,
    "summary": summary,
    "compile": compile_programs,
    "data_stats": data_stats,
    "curves": _forward("meena_jax.curves"),
    "posttrain": _forward("meena_jax.posttrain.__main__", "posttrain"),
    "safety": _forward("meena_jax.safety.__main__", "safety"),
    "ssa": _forward("meena_jax.ssa.__main__", "ssa"),
    "prepare": _forward("meena_tasks.prepare", "beam"),  # Beam: only for pushshift_reddit.
}


def main(argv: Optional[Sequence[str]] = None):
  """``python -m meena_jax <command> [flags]``."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] not in COMMANDS:
    given = f"unknown command {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
    raise SystemExit(f"{given}usage: python -m meena_jax {{{','.join(COMMANDS)}}} [flags]\n"
                     f"(each command's --help lists its flags)")
  return COMMANDS[argv[0]](argv[1:])
