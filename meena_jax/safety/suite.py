"""The test suite: the 14 x 6 x 5 grid generated from labelled seeds, or an imported ASTRAL suite.

A suite is JSONL, one prompt a line: ``id``, ``category``, ``style``, ``technique``,
``testcase`` (the prompt), and for generated suites ``seed_id``, ``intent`` (the seed request,
what "does the answer engage with it?" is measured against) and ``variant``.

Generation is a pure function of the seeds, ``per_cell`` and ``seed``: each category's seeds
(sorted by id) are shuffled by ``random.Random(f"{seed}:{category}")`` and dealt round-robin to
its 30 cells in grid order, so a cell's prompts have distinct seeds and a category uses as many
of its seeds as it can before repeating one. The same inputs give the same bytes.
"""
import json
import random
from typing import Sequence

from meena_jax import jsonl
from meena_jax.safety import styles, taxonomy

FIELDS = ("id", "category", "style", "technique", "testcase")


class SuiteError(ValueError):
  """A grid that cannot be filled, or a suite file that cannot be read (names file and record)."""


def generate(seeds: Sequence[dict], per_cell: int = 3, seed: int = 0) -> list:
  """Rows of the full grid, ``per_cell`` prompts per (category, style, technique) cell."""
  if per_cell < 1:
    raise SuiteError(f"--per-cell {per_cell}: must be at least 1")
  pools = {c: sorted((s for s in seeds if c in s["categories"]), key=lambda s: s["id"])
           for c in taxonomy.CATEGORIES}
  short = [(c, len(pool)) for c, pool in pools.items() if len(pool) < per_cell]
  if short:
    cells = [f"{c} x {style} x {technique} ({n} seed{'' if n == 1 else 's'})"
             for c, n in short for style in taxonomy.STYLES for technique in taxonomy.TECHNIQUES]
    shown = "; ".join(cells[:6]) + (f"; and {len(cells) - 6} more" if len(cells) > 6 else "")
    raise SuiteError(f"{len(cells)} cell(s) are short: each needs {per_cell} distinct seeds, "
                     f"but {shown}. Categories short of seeds: "
                     f"{', '.join(f'{c} ({n})' for c, n in short)}")
  rows = []
  for c_index, category in enumerate(taxonomy.CATEGORIES):
    rng = random.Random(f"{seed}:{category}")
    pool = list(pools[category])
    rng.shuffle(pool)
    dealt = 0
    for style in taxonomy.STYLES:
      for technique in taxonomy.TECHNIQUES:
        for k in range(per_cell):
          chosen = pool[dealt % len(pool)]
          dealt += 1
          variant = rng.randrange(9)
          rows.append({"id": f"c{c_index:02d}-{style}-{technique}-{k}", "category": category,
                       "style": style, "technique": technique,
                       "testcase": styles.render(chosen["text"], style, technique, variant),
                       "seed_id": chosen["id"], "intent": chosen["text"],
                       "variant": variant})
  return rows


def dumps(rows: Sequence[dict]) -> str:
  return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(path, rows: Sequence[dict]) -> None:
  with open(path, "w", encoding="utf-8", newline="\n") as out:
    out.write(dumps(rows))


def read(path) -> list:
  """A suite JSONL file (what ``generate`` writes or ``--import`` converted)."""
  rows, seen = [], set()
  for where, row in jsonl.read(path, SuiteError):
    missing = [k for k in FIELDS if not isinstance(row, dict) or not isinstance(row.get(k), str)]
    if missing:
      raise SuiteError(f"{where}: missing or non-string {', '.join(missing)}")
    if row["id"] in seen:
      raise SuiteError(f"{where}: id {row['id']!r} appears twice")
    seen.add(row["id"])
    rows.append(row)
  return rows


# ----------------------------------------------------------------------------- ASTRAL import
def _normal(value) -> str:
  return str(value).strip().lower().replace(" ", "_")


def _parse_astral_text(path, text: str) -> list:
  """A JSON array of objects, or objects joined by commas (and/or newlines) with no brackets."""
  stripped = text.strip()
  try:
    data = json.loads(stripped)
  except json.JSONDecodeError as first:
    try:
      data = json.loads("[" + stripped.rstrip(",") + "]")
    except json.JSONDecodeError as joined:
      # Objects without brackets: the error inside the bracketed text is the one to show.
      error, shift = (joined, 1) if stripped.startswith("{") else (first, 0)
      column = error.colno - (shift if error.lineno == 1 else 0)
      line = error.lineno + text[:len(text) - len(text.lstrip())].count("\n")
      raise SuiteError(f"{path}:{line}:{column}: not a JSON array or comma-joined "
                       f"JSON objects ({error.msg})") from None
  if isinstance(data, dict):
    data = [data]
  if not isinstance(data, list):
    raise SuiteError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
  return data


def import_astral(path) -> list:
  """Suite rows from an ASTRAL file: records with ``id``, ``category``, ``style``,
  ``technique`` and ``testcase`` (a string, or a list of strings: one row each, ids
  ``<id>.<n>``). Names are matched case-insensitively, spaces as underscores."""
  with open(path, encoding="utf-8") as f:
    records = _parse_astral_text(path, f.read())
  axes = {"category": taxonomy.CATEGORIES, "style": taxonomy.STYLES,
          "technique": taxonomy.TECHNIQUES}
  rows, seen = [], set()
  for number, record in enumerate(records, start=1):
    where = f"{path}: record {number}"
    if not isinstance(record, dict):
      raise SuiteError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [k for k in FIELDS if k not in record]
    if missing:
      raise SuiteError(f"{where}: missing {', '.join(missing)}")
    where += f" (id {record['id']})"
    values = {}
    for axis, allowed in axes.items():
      value = _normal(record[axis])
      if value not in allowed:
        raise SuiteError(f"{where}: unknown {axis} {record[axis]!r}; expected one of "
                         f"{', '.join(allowed)}")
      values[axis] = value
    cases = record["testcase"]
    if isinstance(cases, str):
      cases = [cases]
    if (not isinstance(cases, list) or not cases
        or not all(isinstance(c, str) and c.strip() for c in cases)):
      raise SuiteError(f"{where}: testcase must be a non-empty string or list of them")
    for n, case in enumerate(cases):
      row_id = str(record["id"]) if len(cases) == 1 else f"{record['id']}.{n}"
      if row_id in seen:
        raise SuiteError(f"{where}: id {row_id!r} appears twice")
      seen.add(row_id)
      rows.append({"id": row_id, **values, "testcase": case.strip()})
  return rows
