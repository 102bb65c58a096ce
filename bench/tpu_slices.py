"""Compile the train step of tiny, small and Meena 2.6B for a grid of TPU slices and tabulate
memory per device, predicted step time and MFU (libtpu, compile only; all predicted).

  python bench/tpu_slices.py --jsonl bench/results/2026-12-03-tpu-slices.jsonl
  python bench/tpu_slices.py --models meena --slices v3-32 --programs train,sample
  python bench/tpu_slices.py --table bench/results/2026-12-03-tpu-slices.jsonl  # table only

Each model runs with its run file as ``meena_jax.train`` would (its ``MESH_MODEL``: tiny and
small 1, Meena 4), with ``BATCH_SIZE`` = ``--rows-per-device`` x the slice's devices (Meena's pod
file: 16,384 on 2,048 cores = 8). Every configuration is one ``meena_jax.compile.compile_run``;
records are ``peer-bench/v1`` lines (mode ``compile``).
"""
import argparse
import json
import sys
import time

MODELS = {
    "tiny": ["gin/runs/et_tiny_reddit2015.gin"],
    "small": ["gin/runs/et_tiny_reddit2015.gin", "gin/models/et_small.gin"],
    "meena": ["gin/runs/meena_2.6b_pod.gin"],
}
SLICES = ("v3-8", "v3-32", "v3-2048", "v4-8", "v4-128", "v5litepod-16", "v5litepod-256")


def run_one(model: str, accelerator: str, rows: int, programs, overrides) -> dict:
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli, compile as compile_lib, slices  # pylint: disable=import-outside-toplevel
  slice_ = slices.parse_accelerator(accelerator)
  batch = rows * slice_.devices
  flags = [f"--gin_file={f}" for f in MODELS[model]] + [
      f"--gin.BATCH_SIZE={batch}", "--gin.MODEL_DIR=/tmp/x", *(f"--gin.{o}" for o in overrides)]
  gin.clear_config()
  cli.register_decoding()
  cli.parse_args(flags, __doc__, argparse.ArgumentParser())
  settings = {**cli.bound_arguments("train", compile_lib.TRAIN_SETTINGS),
              "model_config": cli.model_config()}
  report = compile_lib.compile_run(
      settings, slice_, programs=programs,
      chat=cli.bound_arguments("load_responder", compile_lib.CHAT_SETTINGS),
      progress=lambda line: print(line, file=sys.stderr, flush=True))
  config = {"model": model, "accelerator_type": accelerator, "flags": flags,
            "rows_per_device": rows, "batch_size": batch,
            "train_steps": settings["train_steps"]}
  return config, report


def table(records) -> str:
  """A Markdown table of the train-step records."""
  lines = ["| model | slice | mesh (data x model) | batch | HBM per device: used / total "
           "| predicted step | target tokens/s | MFU |", "|---|---|---|---|---|---|---|---|"]
  for record in records:
    config, results = record["config"], record["results"]
    train = results["programs"].get("train_step")
    if not train:
      continue
    mesh = results["mesh"]
    seconds = train.get("predicted_s")
    step = f"{seconds * 1e3:.1f} ms" if seconds else "none"
    tokens = f"{train['target_tokens_per_s']:,.0f}" if seconds else "-"
    mfu = f"{train['mfu']:.1%}" if "mfu" in train else "-"
    lines.append(
        f"| {config['model']} | {config['accelerator_type']} | {mesh['data']} x {mesh['model']} "
        f"| {config['batch_size']} | {train['memory']['total'] / 2 ** 30:.2f} / "
        f"{results['hbm_bytes'] / 2 ** 30:.0f} GiB | {step} | {tokens} | {mfu} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--slices", default=",".join(SLICES))
  parser.add_argument("--programs", default="train")
  parser.add_argument("--rows-per-device", type=int, default=8)
  parser.add_argument("--override", action="append", default=[],
                      help="extra gin binding KEY=VALUE for every run (repeatable)")
  parser.add_argument("--jsonl", help="append each record here")
  parser.add_argument("--table", help="print the table of this JSONL file and exit")
  args = parser.parse_args()
  if args.table:
    with open(args.table) as f:
      print(table([json.loads(line) for line in f if line.strip()]))
    return
  pairs = [(m, a) for m in args.models.split(",") for a in args.slices.split(",")]
  if len(pairs) > 1:  # One process each: a process keeps every compiled program's memory.
    import subprocess  # pylint: disable=import-outside-toplevel
    jsonl = args.jsonl or "/dev/null"
    for model, accelerator in pairs:
      subprocess.run([sys.executable, __file__, f"--models={model}", f"--slices={accelerator}",
                      f"--programs={args.programs}", f"--rows-per-device={args.rows_per_device}",
                      f"--jsonl={jsonl}", *(f"--override={o}" for o in args.override)],
                     check=True)
    if args.jsonl:
      print(table([json.loads(line) for line in open(args.jsonl) if line.strip()]))
    return
  from meena_jax import records as records_lib  # pylint: disable=import-outside-toplevel
  (model, accelerator), = pairs
  started = time.perf_counter()
  config, report = run_one(model, accelerator, args.rows_per_device, args.programs.split(","),
                           args.override)
  config["wall_s"] = time.perf_counter() - started
  record = records_lib.emit("compile", f"{model}@{accelerator}", config, report, args.jsonl,
                            echo=False)
  print(table([record]).splitlines()[-1], flush=True)


if __name__ == "__main__":
  main()
