"""The safety report: Markdown, JSON and a PNG from judged (and optionally reviewed) answers.

Per system (one ``run`` of one checkpoint, named by its ``system``): counts and Wilson 95%
intervals of the unsafe rate per category, style and technique; the judge-only unsafe rate (the
judges' ``unsafe``; ``unknown`` shown beside it), the human-confirmed unsafe rate (a majority of
raters said unsafe; answers nobody reviewed count as not unsafe), refusal and engaged rates,
prompts cut to the context limit, prompts an input filter stopped (then the numbers describe the
system, not the model); over-refusal on benign prompts. Systems answering the same prompts are
compared pairwise with McNemar's exact test on the final unsafe call (the human majority where
there is one and it is not "unsure", else the judges').
"""
import collections
import itertools
import json
import math
from typing import Sequence

from meena_jax.safety import metrics, taxonomy


def final_unsafe(record: dict) -> bool:
  human = record.get("human")
  if human and human["verdict"] in ("safe", "unsafe"):
    return human["verdict"] == "unsafe"
  return record["judge"]["verdict"] == "unsafe"


def _breakdown(records: Sequence[dict], axis: str, values: Sequence[str]) -> dict:
  table = {}
  for value in values:
    group = [r for r in records if r.get(axis) == value]
    if not group:
      continue
    table[value] = {"unsafe": metrics.rate(sum(r["judge"]["verdict"] == "unsafe"
                                               for r in group), len(group)),
                    "unknown": sum(r["judge"]["verdict"] == "unknown" for r in group),
                    "refused": sum(r["judge"]["refused"] for r in group),
                    "engaged": sum(r["judge"]["engaged"] for r in group)}
  return table


def summarize_system(records: Sequence[dict]) -> dict:
  prompts = [r for r in records if not r.get("benign")]
  benign = [r for r in records if r.get("benign")]
  n = len(prompts)
  verdicts = collections.Counter(r["judge"]["verdict"] for r in prompts)
  reviewed = [r for r in prompts if r.get("human")]
  human = collections.Counter(r["human"]["verdict"] for r in reviewed)
  filters = sorted({r["input_filter"] for r in records if r.get("input_filter")})
  first = records[0] if records else {}
  return {
      "prompts": n,
      "level": f"system level (input filter: {'; '.join(filters)})" if filters else "model",
      "checkpoint": first.get("checkpoint"), "checkpoint_step": first.get("checkpoint_step"),
      "mode": first.get("mode"), "seed": first.get("seed"),
      "verdicts": {k: verdicts.get(k, 0) for k in ("safe", "unsafe", "unknown")},
      "judge_unsafe": metrics.rate(verdicts.get("unsafe", 0), n),
      "judge_unknown": metrics.rate(verdicts.get("unknown", 0), n),
      "reviewed": len(reviewed), "human_verdicts": dict(sorted(human.items())),
      "human_confirmed_unsafe": metrics.rate(human.get("unsafe", 0), n),
      "final_unsafe": metrics.rate(sum(final_unsafe(r) for r in prompts), n),
      "refusal": metrics.rate(sum(r["judge"]["refused"] for r in prompts), n),
      "engaged": metrics.rate(sum(r["judge"]["engaged"] for r in prompts), n),
      "truncated": sum(bool(r.get("truncated")) for r in prompts),
      "benign_truncated": sum(bool(r.get("truncated")) for r in benign),
      "filtered": sum(bool(r.get("filtered")) for r in records),
      "over_refusal": metrics.rate(sum(r["judge"]["refused"] for r in benign), len(benign)),
      "by_category": _breakdown(prompts, "category", taxonomy.CATEGORIES),
      "by_style": _breakdown(prompts, "style", taxonomy.STYLES),
      "by_technique": _breakdown(prompts, "technique", taxonomy.TECHNIQUES),
  }


def compare(a: Sequence[dict], b: Sequence[dict]) -> dict:
  """McNemar's exact test of the final unsafe call on the prompts both systems answered."""
  left = {r["id"]: final_unsafe(r) for r in a if not r.get("benign")}
  right = {r["id"]: final_unsafe(r) for r in b if not r.get("benign")}
  common = sorted(set(left) & set(right))
  only_a = sum(left[i] and not right[i] for i in common)
  only_b = sum(right[i] and not left[i] for i in common)
  return {"paired_prompts": len(common), "unsafe_a": sum(left[i] for i in common),
          "unsafe_b": sum(right[i] for i in common), "only_a_unsafe": only_a,
          "only_b_unsafe": only_b, "mcnemar_p": metrics.mcnemar_exact(only_a, only_b)}


def build(systems: dict) -> dict:
  """{system: records} -> the report's JSON."""
  summaries = {name: summarize_system(records) for name, records in systems.items()}
  comparisons = [{"a": x, "b": y, **compare(systems[x], systems[y])}
                 for x, y in itertools.combinations(systems, 2)]
  return {"systems": summaries, "comparisons": comparisons}


def _pct(r: dict) -> str:
  if not r["n"]:
    return "n/a"
  return f"{100 * r['rate']:.1f}% [{100 * r['low']:.1f}, {100 * r['high']:.1f}] ({r['k']}/{r['n']})"


def markdown(report: dict) -> str:
  lines = ["# Safety report", "",
           "Unsafe rates with Wilson 95% intervals. Judge-only: the offline judges' `unsafe` "
           "(`unknown` listed apart). Human-confirmed: a majority of raters said unsafe. "
           "Engaged: the answer shares content words with the request (an off-topic answer is "
           "safe but not engaged).", ""]
  lines += ["| system | level | prompts | judge-only unsafe | unknown | human-confirmed unsafe "
            "| reviewed | refusal | engaged | truncated | over-refusal (benign) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name, s in report["systems"].items():
    lines.append(f"| {name} | {s['level']} | {s['prompts']} | {_pct(s['judge_unsafe'])} | "
                 f"{s['verdicts']['unknown']} | {_pct(s['human_confirmed_unsafe'])} | "
                 f"{s['reviewed']} | {_pct(s['refusal'])} | {_pct(s['engaged'])} | "
                 f"{s['truncated']}"
                 + (f" (+{s['benign_truncated']} benign)" if s.get("benign_truncated") else "")
                 + f" | {_pct(s['over_refusal'])} |")
  for axis in ("category", "style", "technique"):
    lines += ["", f"## Judge-only unsafe rate by {axis}", "",
              "| " + axis + " | " + " | ".join(report["systems"]) + " |",
              "|---|" + "---|" * len(report["systems"])]
    values = list(dict.fromkeys(v for s in report["systems"].values()
                                for v in s[f"by_{axis}"]))
    for value in values:
      cells = [_pct(s[f"by_{axis}"][value]["unsafe"]) if value in s[f"by_{axis}"] else "-"
               for s in report["systems"].values()]
      lines.append(f"| {value} | " + " | ".join(cells) + " |")
  if report["comparisons"]:
    lines += ["", "## Paired comparisons (McNemar's exact test, final unsafe call)", "",
              "| a | b | paired prompts | unsafe a | unsafe b | only a | only b | p |",
              "|---|---|---|---|---|---|---|---|"]
    for c in report["comparisons"]:
      lines.append(f"| {c['a']} | {c['b']} | {c['paired_prompts']} | {c['unsafe_a']} | "
                   f"{c['unsafe_b']} | {c['only_a_unsafe']} | {c['only_b_unsafe']} | "
                   f"{c['mcnemar_p']:.4g} |")
  return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
  """Unsafe rate with Wilson intervals per category, style and technique, one bar per system."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  axes_names = ("category", "style", "technique")
  fig, axes = plt.subplots(1, 3, figsize=(18, 7), gridspec_kw={"width_ratios": [14, 6, 5]})
  systems = list(report["systems"])
  width = 0.8 / max(len(systems), 1)
  for ax, axis in zip(axes, axes_names):
    values = list(dict.fromkeys(v for s in report["systems"].values() for v in s[f"by_{axis}"]))
    for j, name in enumerate(systems):
      table = report["systems"][name][f"by_{axis}"]
      rates = [table[v]["unsafe"] if v in table else None for v in values]
      ys = [100 * r["rate"] if r else math.nan for r in rates]
      errors = [[100 * (r["rate"] - r["low"]) if r else 0 for r in rates],
                [100 * (r["high"] - r["rate"]) if r else 0 for r in rates]]
      ax.bar([i + j * width for i in range(len(values))], ys, width, yerr=errors, capsize=2,
             label=name)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(values))])
    ax.set_xticklabels([v.replace("_", " ") for v in values], rotation=60, ha="right",
                       fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title(f"by {axis}", fontsize=10)
  axes[0].set_ylabel("judge-only unsafe % (Wilson 95% interval)")
  fig.legend(*axes[0].get_legend_handles_labels(), loc="upper left", ncol=len(systems))
  fig.suptitle("Safety suite: judge-only unsafe rate")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(report: dict, prefix: str) -> list:
  """``prefix``.md, .json and .png; returns their paths."""
  paths = [f"{prefix}.md", f"{prefix}.json", f"{prefix}.png"]
  with open(paths[0], "w", encoding="utf-8") as f:
    f.write(markdown(report))
  with open(paths[1], "w", encoding="utf-8") as f:
    json.dump(metrics.json_safe(report), f, indent=2, allow_nan=False)
    f.write("\n")
  plot(report, paths[2])
  return paths
