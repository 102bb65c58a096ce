"""SSA statistics from the ratings: per system, with bootstrap intervals and rater agreement.

Meena's rules (Adiwardana et al. 2020, section 2): each response has 5 raters and the majority
label counts; a response that does not make sense is not specific. So per item, with ``n``
labels, it is sensible when more than ``n / 2`` raters said so, and specific when more than
``n / 2`` raters said it is both sensible and specific. Sensibleness and specificity are the
shares of rated items (those with at least ``min_labels`` labels) that are sensible and
specific; SSA is their mean.

95% intervals come from a percentile bootstrap over items, resampling whole conversations
together (``Item.cluster``) because turns of one conversation are not independent; the seed
fixes them. Agreement is Krippendorff's alpha (nominal) from the ``krippendorff`` package,
computed from each item's counts of yes and no, so it needs no rater identities; it is NaN when
the raters never disagree on a value (there is no variance to agree on).

numpy does the bootstrap and matplotlib (its object API, no global pyplot state) draws SSA
against perplexity with a least-squares line and its R^2, Meena's Figure 1.
"""
import collections
import csv
import dataclasses
import math
import warnings
from typing import Iterable, Mapping, Optional, Sequence

import krippendorff
import numpy as np

STATS = ("sensibleness", "specificity", "ssa")


@dataclasses.dataclass(frozen=True)
class Votes:
  """One item's labels: how many, how many sensible, how many sensible and specific."""
  cluster: str
  labels: int
  sensible: int
  specific: int


@dataclasses.dataclass(frozen=True)
class SystemSummary:
  system: str
  items: int
  rated: int  # items with at least min_labels labels
  labels: int
  sensibleness: float
  specificity: float
  ssa: float
  intervals: Mapping[str, tuple[float, float]]  # stat -> (2.5%, 97.5%)
  alpha_sensible: float
  alpha_specific: float


def majority(yes: int, labels: int) -> bool:
  return 2 * yes > labels


def votes_by_system(rows: Iterable[Mapping]) -> dict[str, list[Votes]]:
  """Folds ``store.label_rows`` (one row per label; an unlabelled item has one row of NULLs)
  into one ``Votes`` per item, grouped by system."""
  items = {}  # item id -> [system, cluster, labels, sensible, specific]
  for row in rows:
    entry = items.setdefault(row["item_id"], [row["system"], row["cluster"], 0, 0, 0])
    if row["sensible"] is not None:
      entry[2] += 1
      entry[3] += row["sensible"]
      entry[4] += bool(row["sensible"] and row["specific"])
  by_system = collections.defaultdict(list)
  for system, cluster, *counts in items.values():
    by_system[system].append(Votes(cluster, *counts))
  return dict(sorted(by_system.items()))


def point(votes: Sequence[Votes]) -> dict[str, float]:
  """Sensibleness, specificity and SSA of rated items (NaN for none)."""
  if not votes:
    return dict.fromkeys(STATS, math.nan)
  sensible = np.mean([majority(v.sensible, v.labels) for v in votes])
  specific = np.mean([majority(v.specific, v.labels) for v in votes])
  return {"sensibleness": float(sensible), "specificity": float(specific),
          "ssa": float((sensible + specific) / 2)}


def bootstrap(votes: Sequence[Votes], samples: int = 1000,
              seed: int = 0) -> dict[str, tuple[float, float]]:
  """Percentile 95% intervals of each statistic, resampling clusters with replacement."""
  if not votes:
    return {stat: (math.nan, math.nan) for stat in STATS}
  index = {c: i for i, c in enumerate(dict.fromkeys(v.cluster for v in votes))}
  per_cluster = np.zeros((len(index), 3))  # items, sensible, specific
  for v in votes:
    per_cluster[index[v.cluster]] += (1, majority(v.sensible, v.labels),
                                      majority(v.specific, v.labels))
  draws = np.random.default_rng(seed).integers(0, len(index), size=(samples, len(index)))
  items, sensible, specific = per_cluster[draws].sum(axis=1).T
  values = {"sensibleness": sensible / items, "specificity": specific / items}
  values["ssa"] = (values["sensibleness"] + values["specificity"]) / 2
  return {stat: tuple(float(x) for x in np.percentile(values[stat], [2.5, 97.5]))
          for stat in STATS}


def agreement(votes: Sequence[Votes]) -> tuple[float, float]:
  """Krippendorff's alpha (nominal) of the sensible and of the specific labels (a label of
  "not sensible" counts as "not specific"). Items with fewer than two labels carry no
  information on agreement and are left out by the measure itself."""
  alphas = []
  for yes in ("sensible", "specific"):
    counts = np.array([[v.labels - getattr(v, yes), getattr(v, yes)] for v in votes
                       if v.labels >= 2], dtype=float)
    if counts.size == 0 or np.count_nonzero(counts.sum(axis=0)) < 2:
      alphas.append(math.nan)  # One value only: agreement is undefined.
      continue
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      alphas.append(float(krippendorff.alpha(value_counts=counts,
                                             level_of_measurement="nominal")))
  return alphas[0], alphas[1]


def summarize(rows: Iterable[Mapping], min_labels: int = 5, samples: int = 1000, seed: int = 0,
              kind: str = "all") -> list[SystemSummary]:
  """One summary per system, from ``store.label_rows``; ``kind`` keeps only ``static`` or
  ``interactive`` items (Meena reports the two evaluations apart)."""
  if min_labels < 1:
    raise ValueError(f"min_labels must be at least 1, got {min_labels}")
  if kind != "all":
    rows = [row for row in rows if row["kind"] == kind]
  summaries = []
  for system, votes in votes_by_system(rows).items():
    rated = [v for v in votes if v.labels >= min_labels]
    alpha_sensible, alpha_specific = agreement(votes)
    summaries.append(SystemSummary(
        system=system, items=len(votes), rated=len(rated), labels=sum(v.labels for v in votes),
        **point(rated), intervals=bootstrap(rated, samples, seed),
        alpha_sensible=alpha_sensible, alpha_specific=alpha_specific))
  return summaries


def _percent(x: float) -> str:
  return "n/a" if math.isnan(x) else f"{100 * x:.1f}"


def format_table(summaries: Sequence[SystemSummary]) -> str:
  """The report as a fixed-width table, percentages with their 95% intervals."""
  header = ("system", "items", "rated", "labels", "sensible % [95% CI]",
            "specific % [95% CI]", "SSA % [95% CI]", "alpha sens", "alpha spec")
  lines = [header]
  for s in summaries:
    cells = [f"{_percent(getattr(s, stat))} [{_percent(s.intervals[stat][0])}, "
             f"{_percent(s.intervals[stat][1])}]" for stat in STATS]
    lines.append((s.system, str(s.items), str(s.rated), str(s.labels), *cells,
                  "n/a" if math.isnan(s.alpha_sensible) else f"{s.alpha_sensible:.3f}",
                  "n/a" if math.isnan(s.alpha_specific) else f"{s.alpha_specific:.3f}"))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                   for line in lines)


def write_summary_csv(path, summaries: Sequence[SystemSummary],
                      perplexity: Optional[Mapping[str, float]] = None):
  """One row per system; rates as fractions in [0, 1]."""
  perplexity = perplexity or {}
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["system", "items", "rated_items", "labels"]
                    + [f"{stat}{end}" for stat in STATS for end in ("", "_low", "_high")]
                    + ["alpha_sensible", "alpha_specific", "perplexity"])
    for s in summaries:
      writer.writerow([s.system, s.items, s.rated, s.labels]
                      + [x for stat in STATS for x in (getattr(s, stat), *s.intervals[stat])]
                      + [s.alpha_sensible, s.alpha_specific, perplexity.get(s.system, "")])


def write_labels_csv(path, rows: Iterable[Mapping]):
  """Every label (raters by number, never by name or token) with its item, for other tools."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["item", "system", "kind", "cluster", "context", "response", "rater",
                     "sensible", "specific"])
    for row in rows:
      if row["sensible"] is not None:
        writer.writerow([row["key"], row["system"], row["kind"], row["cluster"], row["context"],
                         row["response"], row["rater_id"], row["sensible"],
                         int(bool(row["sensible"] and row["specific"]))])


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
  """Least-squares ``y = slope * x + intercept`` and its R^2."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  slope, intercept = np.polyfit(x, y, 1)
  residual = ((y - (slope * x + intercept)) ** 2).sum()
  total = ((y - y.mean()) ** 2).sum()
  return float(slope), float(intercept), float(1 - residual / total) if total else math.nan


def plot_ssa_vs_perplexity(path, summaries: Sequence[SystemSummary],
                           perplexity: Mapping[str, float]) -> tuple[float, float, float]:
  """Draws each system's SSA (with its interval) against its perplexity, the fitted line and
  R^2 into a PNG; returns (slope, intercept, R^2) of SSA in percent per unit of perplexity."""
  # Imported here: matplotlib takes half a second to import and only the plot needs it.
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  by_name = {s.system: s for s in summaries}
  unknown = sorted(set(perplexity) - set(by_name))
  if unknown:
    raise ValueError(f"perplexity given for systems without items: {unknown}; systems are "
                     f"{sorted(by_name)}")
  points = [(perplexity[name], by_name[name]) for name in sorted(perplexity)
            if not math.isnan(by_name[name].ssa)]
  if len(points) < 2:
    raise ValueError("the plot needs at least two systems with both a perplexity and rated "
                     f"items; have {[s.system for _, s in points]}")
  x = np.array([p for p, _ in points])
  y = np.array([100 * s.ssa for _, s in points])
  low = y - np.array([100 * s.intervals["ssa"][0] for _, s in points])
  high = np.array([100 * s.intervals["ssa"][1] for _, s in points]) - y
  slope, intercept, r2 = fit_line(x, y)
  figure = Figure(figsize=(6, 4.5), dpi=120)
  axes = figure.add_subplot()
  axes.errorbar(x, y, yerr=[low, high], fmt="o", capsize=3, label="systems (95% CI)")
  line_x = np.linspace(x.min(), x.max(), 50)
  axes.plot(line_x, slope * line_x + intercept, "--",
            label=f"SSA = {slope:.2f} * perplexity + {intercept:.1f}   R² = {r2:.3f}")
  for (p, s), yy in zip(points, y):
    axes.annotate(s.system, (p, yy), textcoords="offset points", xytext=(5, 5))
  axes.set_xlabel("perplexity")
  axes.set_ylabel("SSA (%)")
  axes.set_title("Human-rated SSA against perplexity")
  axes.legend(loc="best", fontsize="small")
  axes.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path)
  return slope, intercept, r2

