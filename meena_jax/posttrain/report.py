"""PPO curves from a run's ``metrics.jsonl``: reward, KL, entropy, value loss, clip fraction,
response length and ptx loss per iteration, one panel each, as PNG. Several run directories
draw one line each (e.g. beta = 0.02 against beta = 0, or seeds)."""
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # Files only.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from meena_jax import curves, storage  # pylint: disable=wrong-import-position

PANELS = (("reward", "RM reward"), ("kl", "KL to reference (nats/response)"),
          ("entropy", "entropy (nats/token)"), ("value_loss", "value loss"),
          ("clip_fraction", "clip fraction"), ("response_length", "response length (tokens)"),
          ("ptx_loss", "ptx LM loss"))


def read_records(run_dir) -> list:
  """Per-iteration records of a PPO run, the last one of each iteration (resumes repeat
  some)."""
  by_step = {record["step"]: record for record in curves.read_records(run_dir)}
  return [by_step[s] for s in sorted(by_step)]


def plot(run_dirs: Sequence, output=None) -> storage.Path:
  """Draws the panels for every run into ``output`` (default ``<first run>/ppo.png``)."""
  figure, axes = plt.subplots(2, 4, figsize=(16, 7))
  for run_dir in run_dirs:
    records = read_records(run_dir)
    steps = [r["step"] for r in records]
    for axis, (key, title) in zip(axes.flat, PANELS):
      axis.plot(steps, [r.get(key, float("nan")) for r in records], marker=".",
                label=storage.path(run_dir).name)
      axis.set(title=title, xlabel="iteration")
      axis.grid(alpha=0.3)
  axes.flat[0].legend(fontsize="small")
  axes.flat[-1].axis("off")
  figure.tight_layout()
  return curves.save_png(figure, output or storage.path(run_dirs[0]) / "ppo.png")
