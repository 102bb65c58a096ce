"""Loss and perplexity curves from runs' ``metrics.jsonl``, as PNG.

  python -m meena_jax curves runs/demo                      # -> runs/demo/curves.png
  python -m meena_jax curves runs/sweep/* --output sweep.png

One figure, two panels: train loss (token-weighted, per log window) and eval perplexity, one
line per run. A restarted run logs some steps twice; the last record of a step wins.
"""
import argparse
import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # Files only: no display on training machines.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from meena_jax import jsonl, storage  # pylint: disable=wrong-import-position


def read_records(run_dir) -> list[dict]:
  """Every record of a run's ``metrics.jsonl`` in file order (a resumed run repeats some
  steps; later lines win where callers key by step); a bad line is named by file and line."""
  path = storage.path(run_dir) / "metrics.jsonl"
  if not path.exists():
    raise FileNotFoundError(f"{path}: no metrics (has the run logged a step yet?)")
  return [record for _, record in jsonl.read(path)]


def read_metrics(run_dir) -> tuple[dict[int, float], dict[int, float]]:
  """(step -> train loss, step -> eval perplexity) of one run."""
  train, evaluation = {}, {}
  for record in read_records(run_dir):
    if "loss" in record:
      train[record["step"]] = record["loss"]
    if "eval_perplexity" in record:
      evaluation[record["step"]] = record["eval_perplexity"]
  return dict(sorted(train.items())), dict(sorted(evaluation.items()))


def plot_runs(run_dirs: Sequence, output, labels: Sequence[str] = None) -> storage.Path:
  """Draws every run's curves into ``output`` (PNG) and returns its path."""
  labels = labels or [storage.path(d).name for d in run_dirs]
  figure, (loss_axis, ppl_axis) = plt.subplots(1, 2, figsize=(11, 4))
  for run_dir, label in zip(run_dirs, labels):
    train, evaluation = read_metrics(run_dir)
    loss_axis.plot(list(train), list(train.values()), label=label)
    if evaluation:
      ppl_axis.plot(list(evaluation), list(evaluation.values()), marker="o", label=label)
  loss_axis.set(xlabel="step", ylabel="train loss (nats/token)", title="training loss")
  ppl_axis.set(xlabel="step", ylabel="perplexity", title="eval perplexity", yscale="log")
  for axis in (loss_axis, ppl_axis):
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
      axis.legend(fontsize="small")
  figure.tight_layout()
  return save_png(figure, output)


def save_png(figure, output) -> storage.Path:
  """Writes ``figure`` as PNG to ``output`` (local or gs://), closes it, returns the path."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  plt.close(figure)
  output = storage.path(output)
  output.write_bytes(buffer.getvalue())
  return output


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("run_dirs", nargs="+", help="run directories (MODEL_DIRs)")
  parser.add_argument("--output", help="PNG path (default: <first run>/curves.png)")
  args = parser.parse_args(argv)
  output = args.output or storage.path(args.run_dirs[0]) / "curves.png"
  print(plot_runs(args.run_dirs, output))


if __name__ == "__main__":
  main()
