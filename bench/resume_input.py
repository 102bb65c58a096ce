"""Seconds from process start to the first new training batch when resuming at step N.

  python bench/resume_input.py --steps 10,5000 --jsonl bench/results/2026-12-03-resume.jsonl

For each N, a fresh process (imports included) builds the tiny chitchat run's input
(``gin/runs/et_tiny_chitchat.gin``: BATCH_SIZE 16, cut 128/128) and produces the batch after N:
``saved``: ``input_pipeline.TrainInput`` with rows 512/128, restored from the position a
checkpoint at step N holds (computed untimed beforehand by reading N batches, as the run did);
``replay``: the input path before it (``host_batches``: SeqIO's packing of 128/128 rows, which
skipped N batches to resume). The rest of a resume (orbax restore, compiling the step) does
not depend on N. Each process prints its seconds; the records are ``peer-bench/v1``.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position

BATCH, CUT, ROWS, DATA_DIR = 16, {"inputs": 128, "targets": 128}, {"inputs": 512,
                                                                  "targets": 128}, None


def _sources(data_dir):
  from meena_jax import token_store  # pylint: disable=import-outside-toplevel
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
  task = seqio_tasks.get_task("chitchat", data_dir)
  return task, token_store.tokenized_sources(task, "train", CUT, data_dir, progress=False)


def child(mode: str, steps: int, data_dir: str, state_file: str):
  """One timed resume; runs in its own process."""
  started = time.perf_counter()
  from meena_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  task, sources = _sources(data_dir)
  if mode == "saved":
    batches = input_pipeline.TrainInput(sources, BATCH, ROWS, seed=0)
    with open(state_file) as f:
      batches.restore(json.load(f))
  else:
    batches = input_pipeline.host_batches(task, "train", BATCH, CUT["inputs"], CUT["targets"],
                                          pack=True, shuffle=True, seed=0, repeat=True,
                                          skip_batches=steps)
  next(batches)
  print(json.dumps({"seconds": time.perf_counter() - started}))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", default="10,5000")
  parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
  parser.add_argument("--modes", default="saved,replay")
  parser.add_argument("--jsonl")
  parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    mode, steps, state_file = args.child
    return child(mode, int(steps), args.data_dir, state_file)
  from meena_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  _, sources = _sources(args.data_dir)  # Prepared and tokenised before anything is timed.
  for steps in map(int, args.steps.split(",")):
    batches = input_pipeline.TrainInput(sources, BATCH, ROWS, seed=0)
    for _ in range(steps):
      next(batches)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
      json.dump(batches.state(), f)
    for mode in args.modes.split(","):
      output = subprocess.run(
          [sys.executable, __file__, f"--data_dir={args.data_dir}", "--child", mode,
           str(steps), f.name], capture_output=True, text=True, check=True).stdout
      seconds = json.loads(output.strip().splitlines()[-1])["seconds"]
      common.emit("resume_input", f"chitchat:{mode}", {"step": steps, "batch": BATCH,
                                                        "rows": ROWS if mode == "saved" else CUT},
                  {"seconds_to_first_batch": seconds}, args.jsonl)
      print(f"{mode} at step {steps}: {seconds:.1f} s to the first new batch", file=sys.stderr)
    os.unlink(f.name)


if __name__ == "__main__":
  main()
