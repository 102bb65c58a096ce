"""SSA report: majority labels, SSA, bootstrap intervals and alpha against hand-computed values."""
import csv
import math

import pytest

from meena_jax.ssa import __main__ as cli
from meena_jax.ssa import importers, report, store

# (sensible, specific) of five raters; specific is None when not sensible (it was not asked).
Y, S, N = (1, 1), (1, 0), (0, None)
ITEMS = {  # response -> votes
    "all sensible, 3 of 5 specific": [Y, Y, Y, S, S],  # sensible, specific
    "3 sensible, 2 specific": [Y, Y, S, N, N],  # sensible, not specific
    "2 sensible, both specific": [Y, Y, N, N, N],  # not sensible, hence not specific
}


def _rows(items, system="a", cluster=None):
  """Rows shaped like store.label_rows."""
  return [{"item_id": f"{system}{i}", "system": system, "cluster": cluster or f"{system}{i}",
           "sensible": sensible, "specific": specific}
          for i, votes in enumerate(items) for sensible, specific in votes]


def test_majority_and_ssa_by_hand():
  assert report.majority(3, 5) and not report.majority(2, 5) and not report.majority(2, 4)
  votes = report.votes_by_system(_rows(ITEMS.values()))["a"]
  assert [(v.labels, v.sensible, v.specific) for v in votes] == [(5, 5, 3), (5, 3, 2), (5, 2, 2)]
  assert report.point(votes) == pytest.approx(
      {"sensibleness": 2 / 3, "specificity": 1 / 3, "ssa": 1 / 2})
  assert all(math.isnan(x) for x in report.point([]).values())


def test_summarize_counts_rated_items_and_keeps_the_evaluations_apart():
  static = [dict(r, kind="static") for r in _rows(ITEMS.values())]
  live = [dict(r, kind="interactive", item_id="live") for r in _rows([[Y] * 5])]
  (everything,) = report.summarize(static + live, samples=10)
  assert (everything.items, everything.rated, everything.labels) == (4, 4, 20)
  (interactive,) = report.summarize(static + live, samples=10, kind="interactive")
  assert (interactive.items, interactive.rated, interactive.ssa) == (1, 1, 1.0)
  (partial,) = report.summarize(static + live, min_labels=6, samples=10, kind="static")
  assert (partial.items, partial.rated, partial.labels) == (3, 0, 15)
  assert math.isnan(partial.ssa)
  with pytest.raises(ValueError, match="min_labels"):
    report.summarize(static, min_labels=0)


def test_agreement_is_krippendorffs_alpha_by_hand():
  votes = report.votes_by_system(_rows(ITEMS.values()))["a"]
  # Sensible: per item (no, yes) = (0, 5), (2, 3), (3, 2); n = 15 values, 5 no and 10 yes.
  # D_o = (2*2*3/4 + 2*3*2/4) / 15 = 0.4;  D_e = 2*5*10 / (15*14) = 10/21;  alpha = 1 - 0.84.
  # Specific: (2, 3), (3, 2), (3, 2); 8 no, 7 yes. D_o = 9/15, D_e = 112/210; alpha = -0.125.
  assert report.agreement(votes) == pytest.approx((0.16, -0.125))
  unanimous = report.votes_by_system(_rows([[Y] * 5, [Y] * 5]))["a"]
  assert all(math.isnan(a) for a in report.agreement(unanimous))  # nothing to agree on


def test_bootstrap_resamples_whole_conversations_and_is_seeded():
  # One conversation of three sensible turns, another of one non-sensible turn. Resampling two
  # conversations gives sensibleness 0 (p = 1/4), 3/4 or 1 (p = 1/4): the 95% interval is [0, 1].
  # Resampling the four turns independently would almost never give 0.
  rows = _rows([[Y] * 5] * 3, cluster="talk 1") + [
      dict(r, item_id="x", cluster="talk 2") for r in _rows([[N] * 5])]
  votes = report.votes_by_system(rows)["a"]
  intervals = report.bootstrap(votes, samples=2000, seed=1)
  assert intervals["sensibleness"] == (0.0, 1.0)
  assert intervals == report.bootstrap(votes, samples=2000, seed=1)
  many = report.votes_by_system(_rows(list(ITEMS.values()) * 10))["a"]
  low, high = report.bootstrap(many, samples=500, seed=0)["ssa"]
  assert low < 0.5 < high
  assert report.bootstrap(many, samples=500, seed=0) != report.bootstrap(many, samples=500,
                                                                          seed=1)


def test_fit_line_r2_by_hand():
  # Through (10, 80), (20, 60), (30, 50): slope -1.5, intercept 93.33, residuals 5/3, -10/3,
  # 5/3: SS_res = 50/3 against SS_tot = 1400/3, so R^2 = 27/28.
  slope, intercept, r2 = report.fit_line([10, 20, 30], [80, 60, 50])
  assert (slope, intercept, r2) == pytest.approx((-1.5, 280 / 3, 27 / 28))


def _rated_db(path, systems):
  """A database whose items carry the planned votes of five raters."""
  conn = store.connect(path)
  plan = {}
  for system, items in systems.items():
    batch = [importers.Item(key=f"{system}{i}", system=system, context=("ctx",),
                            response=f"{system} {i}", cluster=f"{system}{i}", source="t")
             for i in range(len(items))]
    store.add_items(conn, batch)
    plan.update({item.response: votes for item, votes in zip(batch, items)})
  for r in range(5):
    rater = store.rater_by_token(conn, store.add_rater(conn, f"r{r}"))["id"]
    while (row := store.next_assignment(conn, rater, 0.0, 60.0)) is not None:
      sensible, specific = plan[row["response"]][r]
      store.answer(conn, rater, row["id"], bool(sensible),
                   None if specific is None else bool(specific), 0.0)
  return conn


def test_report_cli_table_csv_and_plot(tmp_path, capsys):
  db = str(tmp_path / "r.sqlite")
  votes = list(ITEMS.values())
  # SSA: a = 1/2 (above); b = all sensible and specific = 1; c = nothing sensible = 0.
  _rated_db(db, {"a": votes, "b": [[Y] * 5] * 2, "c": [[N] * 5] * 2})
  store.add_items(store.connect(db), [importers.Item("u", "c", ("x",), "unrated", "u", "t")])
  args = ["report", "--db", db, "--csv", str(tmp_path / "s.csv"), "--labels_csv",
          str(tmp_path / "l.csv"), "--bootstrap", "200", "--plot", str(tmp_path / "p.png")]
  assert cli.main(args) == 2
  assert "--plot needs" in capsys.readouterr().err
  args += ["--perplexity", "a=20", "--perplexity", "b=10", "--perplexity", "c=30"]
  assert cli.main(args) == 0
  out = capsys.readouterr().out
  lines = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
  assert lines["a"][:8] == ["a", "3", "3", "15", "66.7", "[0.0,", "100.0]", "33.3"]
  assert lines["c"][:5] == ["c", "3", "2", "10", "0.0"]  # the unlabelled item is not rated
  with open(tmp_path / "s.csv", newline="") as f:
    summary = {row["system"]: row for row in csv.DictReader(f)}
  assert float(summary["a"]["ssa"]) == pytest.approx(0.5)
  assert float(summary["a"]["alpha_sensible"]) == pytest.approx(0.16)
  assert float(summary["b"]["ssa"]) == 1.0 and summary["b"]["perplexity"] == "10.0"
  with open(tmp_path / "l.csv", newline="") as f:
    labels = list(csv.DictReader(f))
  assert len(labels) == 7 * 5 and {row["rater"] for row in labels} == {"1", "2", "3", "4", "5"}
  # SSA % (50, 100, 0) at perplexity (20, 10, 30) lies on one line: R^2 = 1.
  assert "SSA % = -5.000 * perplexity + 150.00, R^2 = 1.000" in out
  assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert cli.main(args[:-6] + ["--perplexity", "zz=3", "--perplexity", "a=1"]) == 2
  assert "perplexity given for systems without items: ['zz']" in capsys.readouterr().err
