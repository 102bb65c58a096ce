"""``python -m meena_jax ssa``: import items, add raters, serve the rating app, report SSA.

  python -m meena_jax ssa import --db ratings.sqlite responses.jsonl meena.txt [--system NAME]
  python -m meena_jax ssa add-rater --db ratings.sqlite --name alice [--admin]
  python -m meena_jax ssa serve --db ratings.sqlite [--port 8000] [--model NAME=COMMAND ...]
  python -m meena_jax ssa report --db ratings.sqlite [--csv ssa.csv] [--labels_csv labels.csv]
      [--perplexity NAME=PPL ... --plot ssa_vs_perplexity.png]

Bad input (a malformed import line, a perplexity that is not a number) stops the command with a
message naming the file and line or the flag, and exit code 2; an import writes nothing unless
every line of every file is valid.
"""
import argparse
import shlex
import signal
import sys
import time
from typing import Sequence

from meena_jax.ssa import importers, store


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
  pairs = {}
  for value in values:
    name, sep, rest = value.partition("=")
    if not sep or not name.strip() or not rest.strip():
      raise SystemExit(f"error: {flag} {value!r}: expected NAME=VALUE")
    if name.strip() in pairs:
      raise SystemExit(f"error: {flag} names {name.strip()!r} twice")
    pairs[name.strip()] = rest.strip()
  return pairs


def cmd_import(args) -> int:
  items = []
  try:
    for path in args.files:
      items.extend(importers.read_items(path, args.system, args.format))
  except (importers.MalformedItemError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  conn = store.connect(args.db)
  added, present = store.add_items(conn, items)
  systems = sorted({item.system for item in items})
  print(f"{len(items)} items read from {len(args.files)} file(s) (systems: "
        f"{', '.join(systems) or 'none'}): {added} added, {present} already in {args.db}")
  return 0


def cmd_add_rater(args) -> int:
  token = store.add_rater(store.connect(args.db), args.name, "admin" if args.admin else "rater",
                          time.time())
  print(f"{args.base_url.rstrip('/')}/{'admin' if args.admin else 'r'}/{token}")
  return 0


def cmd_serve(args) -> int:
  from meena_jax.ssa import interactive, web  # pylint: disable=import-outside-toplevel
  conn = store.connect(args.db)
  admin = None
  if not any(r["role"] == "admin" for r in store.raters(conn)):
    admin = store.add_rater(conn, "admin", "admin", time.time())
  conn.close()

  def ready(url: str):
    print(f"Serving on {url}", flush=True)
    if admin is not None:
      print(f"Created an admin; the admin page is {url}admin/{admin}", flush=True)
  responders = {name: interactive.Responder(name, shlex.split(command), args.model_timeout)
                for name, command in _pairs(args.model, "--model").items()}
  for responder in responders.values():
    responder.start()
  # SIGTERM ends the server like Ctrl-C, so the model processes are stopped too.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  web.serve(args.db, args.host, args.port, responders, 60 * args.lease_minutes, args.threads,
            ready)
  return 0


def cmd_report(args) -> int:
  from meena_jax.ssa import report  # pylint: disable=import-outside-toplevel
  perplexity = {}
  for name, value in _pairs(args.perplexity, "--perplexity").items():
    try:
      perplexity[name] = float(value)
    except ValueError:
      print(f"error: --perplexity {name}={value}: not a number", file=sys.stderr)
      return 2
  if args.plot and not perplexity:
    print("error: --plot needs each system's --perplexity NAME=VALUE", file=sys.stderr)
    return 2
  if args.min_labels < 1:
    print(f"error: --min_labels {args.min_labels}: must be at least 1", file=sys.stderr)
    return 2
  rows = store.label_rows(store.connect(args.db))
  summaries = report.summarize(rows, args.min_labels, args.bootstrap, args.seed, args.kind)
  if not summaries:
    print(f"No {'' if args.kind == 'all' else args.kind + ' '}items in {args.db}: run "
          "`python -m meena_jax ssa import` first.")
    return 1
  print(f"{args.kind.capitalize()} items; the majority of each item's labels counts, and items "
        f"with at least {args.min_labels} labels are rated. 95% intervals: {args.bootstrap} "
        f"bootstrap samples (seed {args.seed}).")
  mixed = sorted({r["system"] for r in rows if r["kind"] == "static"}
                 & {r["system"] for r in rows if r["kind"] == "interactive"})
  if args.kind == "all" and mixed:
    print(f"Note: {', '.join(mixed)} mix static and interactive items; --kind separates them.")
  print(report.format_table(summaries))
  if args.csv:
    report.write_summary_csv(args.csv, summaries, perplexity)
    print(f"Wrote {args.csv}")
  if args.labels_csv:
    report.write_labels_csv(args.labels_csv, rows)
    print(f"Wrote {args.labels_csv}")
  if args.plot:
    try:
      slope, intercept, r2 = report.plot_ssa_vs_perplexity(args.plot, summaries, perplexity)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"SSA % = {slope:.3f} * perplexity + {intercept:.2f}, R^2 = {r2:.3f}; wrote "
          f"{args.plot}")
  return 0


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m meena_jax ssa", description=__doc__.split("\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  commands = p.add_subparsers(dest="command", required=True)

  def command(name, function, help_text):
    sub = commands.add_parser(name, help=help_text, description=help_text,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub.add_argument("--db", required=True, help="the SQLite ratings database (created if "
                     "missing)")
    sub.set_defaults(function=function)
    return sub

  sub = command("import", cmd_import, "load items from JSONL or transcript files")
  sub.add_argument("files", nargs="+")
  sub.add_argument("--system", help="system name for JSONL lines without one; overrides the "
                   "block names of transcripts")
  sub.add_argument("--format", choices=("auto", "jsonl", "transcript"), default="auto",
                   help="auto: .jsonl/.json are JSONL, other files transcripts")

  sub = command("add-rater", cmd_add_rater, "create a rater (or admin) and print their link")
  sub.add_argument("--name", required=True)
  sub.add_argument("--admin", action="store_true", help="an admin: sees progress, rates nothing")
  sub.add_argument("--base_url", default="http://127.0.0.1:8000", help="the server's address")

  sub = command("serve", cmd_serve, "serve the rating app (creates an admin on first start)")
  sub.add_argument("--host", default="127.0.0.1")
  sub.add_argument("--port", type=int, default=8000, help="0 picks a free port")
  sub.add_argument("--threads", type=int, default=8)
  sub.add_argument("--lease_minutes", type=float, default=60.0,
                   help="an item shown but not answered for this long goes to another rater")
  sub.add_argument("--model", action="append", default=[], metavar="NAME=COMMAND",
                   help="a live model for interactive evaluation: a command answering "
                   '{"context": [...]} lines with {"response": "..."} lines (repeatable)')
  sub.add_argument("--model_timeout", type=float, default=300.0,
                   help="seconds a model may take for one answer")

  sub = command("report", cmd_report, "print SSA per system; export CSV and the plot")
  sub.add_argument("--min_labels", type=int, default=store.RATERS_PER_ITEM,
                   help="labels an item needs to count")
  sub.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples")
  sub.add_argument("--seed", type=int, default=0)
  sub.add_argument("--kind", choices=("all", "static", "interactive"), default="all",
                   help="which evaluation's items to count")
  sub.add_argument("--csv", help="write the per-system summary here")
  sub.add_argument("--labels_csv", help="write every label here")
  sub.add_argument("--perplexity", action="append", default=[], metavar="NAME=PPL",
                   help="a system's perplexity, for the plot and the CSV (repeatable)")
  sub.add_argument("--plot", help="write SSA against perplexity with the fitted line (PNG)")
  return p


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  return args.function(args)


if __name__ == "__main__":
  sys.exit(main())
