"""Real target tokens per second of the actual trainer on a real task (``peer-bench/v1``).

  python bench/real_tokens.py --run gin/runs/et_tiny_reddit2015.gin --steps 60
  python bench/real_tokens.py --run gin/runs/et_tiny_chitchat.gin --repo /tmp/before \\
      --label before --jsonl bench/results/2026-12-03-packing.jsonl

Runs ``python -m meena_jax train`` of ``--repo`` (default: this checkout; another checkout
measures an earlier input path with the same command) for ``--steps`` steps in a fresh
MODEL_DIR, then reads its ``metrics.jsonl``: ``tokens_per_s`` there counts the loss-weighted
(real) target tokens over wall time, input included. The first ``--skip`` log windows
(compilation, pipeline start) are left out; ``target_fill`` and ``input_fill`` are the
trainer's own where it logs them. Extra ``--gin.KEY=VALUE`` flags go to the trainer.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run", default="gin/runs/et_tiny_chitchat.gin")
  parser.add_argument("--repo", default=str(REPO), help="the checkout whose trainer runs")
  parser.add_argument("--label", default="current")
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--log_every", type=int, default=10)
  parser.add_argument("--skip", type=int, default=1, help="log windows left out at the start")
  parser.add_argument("--jsonl")
  args, gin_flags = parser.parse_known_args(argv)
  with tempfile.TemporaryDirectory() as model_dir:
    command = [sys.executable, "-m", "meena_jax.train", f"--gin_file={args.run}",
               f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={args.steps}",
               "--gin.EVAL_EVERY=0", f"--gin.train.log_every={args.log_every}",
               f"--gin.train.checkpoint_every={args.steps * 10}", "--gin.train.progress=False",
               *gin_flags]
    result = subprocess.run(command, cwd=args.repo, capture_output=True, text=True, check=False)
    if result.returncode:
      raise SystemExit(f"the trainer failed:\n{result.stderr[-2000:]}")
    records = [json.loads(line) for line in
               (pathlib.Path(model_dir) / "metrics.jsonl").read_text().splitlines()]
  windows = [r for r in records if "loss" in r][args.skip:]
  if not windows:
    raise SystemExit(f"--steps={args.steps} gives no window after --skip={args.skip}")
  mean = lambda key: sum(r[key] for r in windows) / len(windows)  # pylint: disable=unnecessary-lambda-assignment
  results = {"real_target_tokens_per_s": mean("tokens_per_s"), "step_s": mean("step_s"),
             "windows": len(windows), "final_loss": windows[-1]["loss"],
             "tokens_per_s_basis": "loss-weighted target tokens / wall time (input included)"}
  for key in ("input_fill", "target_fill", "examples_per_row"):
    if key in windows[0]:
      results[key] = mean(key)
  common.emit("train_real", f"{pathlib.Path(args.run).stem}:{args.label}",
              {"run": args.run, "steps": args.steps, "overrides": gin_flags,
               "threads": os.cpu_count()}, results, args.jsonl)
  print(f"{args.label}: {results['real_target_tokens_per_s']:,.0f} real target tokens/s, "
        f"{results['step_s']:.3f} s/step", file=sys.stderr)


if __name__ == "__main__":
  main()
