"""How a task's examples fill packed training rows: the numbers behind a task file's lengths.

  python -m meena_jax data_stats --gin_file=gin/runs/et_tiny_reddit2015.gin
  python -m meena_jax data_stats --gin_file=gin/runs/et_tiny_chitchat.gin --split validation \\
      --rows=128/128,384/128,512/128 --json=stats.json

Reads the run's task (``train.task``) as the trainer does. Prints the length distribution of
contexts and responses before the cut, the share the per-example cut (``INPUT_LENGTH``,
``TARGET_LENGTH``) truncates, and for each packed row shape (``--rows``, default the run's
``PACKED_*_LENGTH``) the real-token fill of inputs and targets and the examples per row that
the trainer's first-fit packer achieves over ``--batches`` batches of ``BATCH_SIZE`` rows.
"""
import sys

import numpy as np
import tqdm

from meena_jax import input_pipeline, token_store

PERCENTILES = (50, 90, 99)


def length_distribution(task, split: str, progress: bool = True) -> dict:
  """Token lengths of every example's context and response, uncut (``{"inputs": array, ...}``)."""
  dataset = task.get_dataset(None, split=split, shuffle=False, use_cached=False)
  lengths = {f: [] for f in token_store.FEATURES}
  for example in tqdm.tqdm(dataset.as_numpy_iterator(), desc=f"lengths {split}", unit=" ex",
                           disable=not progress, mininterval=2.0):
    for f in token_store.FEATURES:
      lengths[f].append(len(example[f]))
  return {f: np.asarray(v) for f, v in lengths.items()}


def packing_fill(sources: list, rows: dict, batch_size: int, batches: int,
                 packing_bins: int) -> dict:
  """Mean ``input_pipeline.fill`` of ``batches`` training batches packed into ``rows``."""
  train_input = input_pipeline.TrainInput(sources, batch_size, rows, seed=0,
                                           packing_bins=packing_bins)
  fills = [input_pipeline.fill(next(train_input)) for _ in range(batches)]
  return {k: float(np.mean([f[k] for f in fills])) for k in fills[0]}


def report(lengths: dict, cut: dict, fills: dict) -> str:
  lines = [f"{'':<10}{'examples':>10}{'mean':>8}" + "".join(f"{'p' + str(p):>7}"
                                                             for p in PERCENTILES)
           + f"{'max':>7}{'cut':>6}{'truncated':>11}"]
  for f, name in (("inputs", "context"), ("targets", "response")):
    v = lengths[f]
    lines.append(f"{name:<10}{len(v):>10,}{v.mean():>8.1f}"
                 + "".join(f"{np.percentile(v, p):>7.0f}" for p in PERCENTILES)
                 + f"{v.max():>7}{cut[f]:>6}{np.mean(v > cut[f]):>11.1%}")
  lines.append(f"{'row (in/tgt)':<14}{'input fill':>12}{'target fill':>13}{'examples/row':>14}")
  for shape, fill in fills.items():
    lines.append(f"{shape:<14}{fill['input_fill']:>12.1%}{fill['target_fill']:>13.1%}"
                 f"{fill['examples_per_row']:>14.2f}")
  return "\n".join(lines)


def parse_rows(text: str) -> list:
  """``"512/128,224/128"`` -> ``[{"inputs": 512, "targets": 128}, ...]``."""
  try:
    return [dict(zip(token_store.FEATURES, map(int, part.split("/"))))
            for part in text.split(",")]
  except ValueError:
    raise ValueError("expected INPUTS/TARGETS[,INPUTS/TARGETS...], e.g. 512/128,224/128"
                     ) from None


if __name__ == "__main__":
  from meena_jax import commands  # pylint: disable=import-outside-toplevel
  commands.main(["data_stats", *sys.argv[1:]])
