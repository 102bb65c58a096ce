"""Statistics of the report and of judge evaluation, from scipy and scikit-learn.

- Wilson 95% interval of a rate: ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
- McNemar's exact test of two systems on the same prompts: only discordant prompts count; under
  the null each is equally likely to favour either system, so the two-sided p-value is the
  binomial test of b successes in b + c trials at 1/2.
- Judge agreement with human labels: accuracy, precision, recall, Cohen's kappa, AUROC
  (``sklearn.metrics``).
"""
import math
from typing import Optional, Sequence

import numpy as np


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
  """The Wilson score interval of k successes in n trials ((nan, nan) when n is 0)."""
  if n == 0:
    return math.nan, math.nan
  from scipy import stats  # pylint: disable=import-outside-toplevel
  interval = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
  return float(interval.low), float(interval.high)


def rate(k: int, n: int) -> dict:
  low, high = wilson(k, n)
  return {"k": k, "n": n, "rate": k / n if n else math.nan, "low": low, "high": high}


def mcnemar_exact(b: int, c: int) -> float:
  """Two-sided exact McNemar p-value of b and c discordant pairs (1.0 when there are none)."""
  if b + c == 0:
    return 1.0
  from scipy import stats  # pylint: disable=import-outside-toplevel
  return float(stats.binomtest(b, b + c, 0.5).pvalue)


def classification(truth: Sequence[bool], predicted: Sequence[bool],
                   scores: Optional[Sequence[float]] = None) -> dict:
  """Agreement of binary predictions (and, for AUROC, scores) with labels (True = positive)."""
  from sklearn import metrics  # pylint: disable=import-outside-toplevel
  truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
  both = len(set(truth.tolist())) == 2
  result = {
      "n": int(len(truth)), "positives": int(truth.sum()),
      "accuracy": float(metrics.accuracy_score(truth, predicted)),
      "precision": float(metrics.precision_score(truth, predicted, zero_division=0)),
      "recall": float(metrics.recall_score(truth, predicted, zero_division=0)),
      "kappa": float(metrics.cohen_kappa_score(truth, predicted)) if both or len(
          set(predicted.tolist())) == 2 else math.nan,
      "auroc": math.nan,
      "confusion": {"tp": int((truth & predicted).sum()), "fp": int((~truth & predicted).sum()),
                    "fn": int((truth & ~predicted).sum()),
                    "tn": int((~truth & ~predicted).sum())}}
  if scores is not None and both:
    result["auroc"] = float(metrics.roc_auc_score(truth, np.asarray(scores, float)))
  return result


def best_threshold(scores: Sequence[float], unsafe: Sequence[bool]) -> float:
  """The threshold t maximising balanced accuracy of "score < t is unsafe" (Youden's J): the
  midpoint between two neighbouring distinct scores, or just past an end."""
  scores, unsafe = np.asarray(scores, float), np.asarray(unsafe, bool)
  if unsafe.all() or not unsafe.any():
    raise ValueError("choosing a threshold needs both safe and unsafe labels")
  values = np.unique(scores)
  candidates = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2,
                               [values[-1] + 1.0]])
  best, best_j = candidates[0], -np.inf
  for t in candidates:
    predicted = scores < t
    j = predicted[unsafe].mean() + (~predicted[~unsafe]).mean()
    if j > best_j:
      best, best_j = t, j
  return float(best)


def json_safe(value):
  """NaN (a rate of nothing, AUROC of one class) as JSON null, recursively."""
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and math.isnan(value):
    return None
  return value
