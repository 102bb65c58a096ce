"""Sweep gin settings: every combination of the values given (or a zip of them), one run each.

  python launch/sweep.py --gin_file=gin/runs/et_tiny_chitchat.gin --gin.MODEL_DIR=runs/sweep \\
      --sweep 'train.learning_rate=[0.01, 0.003]' --sweep 'MODEL=[@et_tiny, @transformer_tiny]'
  python launch/sweep.py report runs/sweep     # the table, and runs/sweep/sweep.png

A key is a gin binding (``train.learning_rate``, ``ModelConfig.d_model``) or a macro
(``BATCH_SIZE``); a macro that no binding reads is refused, since sweeping it would change
nothing. ``MODEL`` is the one key that is not gin: ``@et_tiny`` names ``gin/models/et_tiny.gin``
(a ``.gin`` path works too), parsed after the run's own files with the run's vocabulary size
kept, because model files hold shapes and the vocabulary belongs to the task. Swapping files
keeps the model files the one source of shapes; gin references (``@et_tiny``) would need a scoped
copy of every model's bindings.

Each run lives in ``MODEL_DIR/<key=value,...>`` with its ``config.gin``, ``operative_config.gin``,
``sweep.json`` (its settings), ``metrics.jsonl`` and checkpoints. Locally the runs train one
after another in this process: a run whose newest checkpoint is at ``TRAIN_STEPS`` is skipped,
an interrupted one resumes from its checkpoint, so re-running the same command completes a
sweep. With ``--pod`` and ``launch/tpu_pod.py``'s slice flags each run gets its own slice,
``<tpu_name>-<i>``: ``--dry_run`` prints every launch; otherwise each slice is created, installed
and started, and the commands to follow and delete them are printed.
"""
import argparse
import dataclasses
import itertools
import json
import logging
import os
import pathlib
import re
import sys
from typing import Sequence

if __package__ in (None, ""):  # Run as `python launch/sweep.py`: make `launch` importable.
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from launch import tpu_pod  # pylint: disable=wrong-import-position
from meena_jax import storage  # pylint: disable=wrong-import-position

MODEL_KEY = "MODEL"


@dataclasses.dataclass(frozen=True)
class Run:
  """One point of the sweep: its settings and the gin flags that train it."""
  index: int
  name: str
  settings: tuple  # ((key, value text), ...) in --sweep order.
  gin_files: tuple
  overrides: tuple  # KEY=VALUE, as after --gin.
  model_dir: str

  def argv(self) -> list[str]:
    return [f"--gin_file={f}" for f in self.gin_files] + [f"--gin.{o}" for o in self.overrides]


def parse_sweep(text: str) -> tuple[str, list[str]]:
  """``'KEY=[a, b]'`` -> (KEY, ['a', 'b']); values stay gin text (``@x``, ``'s'``, ``1e-3``)."""
  key, _, values = text.partition("=")
  key, values = key.strip(), values.strip()
  if not re.fullmatch(r"[A-Za-z_][\w./]*", key) or not (values.startswith("[")
                                                          and values.endswith("]")):
    raise SystemExit(f"--sweep {text}: expected KEY=[VALUE, VALUE, ...]")
  items, depth, quote, current = [], 0, None, ""
  for char in values[1:-1]:
    if quote:
      quote = None if char == quote else quote
    elif char in "'\"":
      quote = char
    elif char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth == 0:
      items.append(current.strip())
      current = ""
      continue
    current += char
  items.append(current.strip())
  if not all(items):
    raise SystemExit(f"--sweep {text}: an empty value (two commas, or no values)")
  if len(set(items)) < len(items):
    raise SystemExit(f"--sweep {text}: a value is listed twice")
  return key, items


def combinations(sweeps: Sequence[tuple[str, list]], zipped: bool) -> list[tuple]:
  """Settings of every run: the Cartesian product (first key outermost) or, with ``zipped``,
  the i-th value of every key for run i."""
  keys = [key for key, _ in sweeps]
  if len(set(keys)) < len(keys):
    raise SystemExit(f"--sweep: a key is swept twice ({', '.join(keys)})")
  lists = [values for _, values in sweeps]
  if zipped:
    if len({len(v) for v in lists}) > 1:
      raise SystemExit("--zip needs lists of one length, got " + ", ".join(
          f"{key}: {len(values)}" for key, values in sweeps))
    rows = zip(*lists)
  else:
    rows = itertools.product(*lists)
  return [tuple(zip(keys, row)) for row in rows]


def run_name(settings: tuple) -> str:
  """``(("train.learning_rate", "0.01"), ("MODEL", "@et_tiny"))`` ->
  ``learning_rate=0.01,model=et_tiny``: a readable directory name."""
  parts = []
  for key, value in settings:
    value = value.strip("'\"").lstrip("@%")
    if value.endswith(".gin"):
      value = pathlib.PurePath(value).stem
    value = re.sub(r"[^\w.+-]+", "_", value).strip("_") or "_"
    parts.append(f"{key.split('.')[-1].lower()}={value}")
  return ",".join(parts)


def _model_file(value: str) -> str:
  path = f"gin/models/{value[1:]}.gin" if value.startswith("@") else value.strip("'\"")
  if not path.endswith(".gin") or not (tpu_pod.REPO_ROOT / path).is_file() and not (
      pathlib.Path(path).is_file()):
    raise SystemExit(f"--sweep {MODEL_KEY}: {value} is not a model: give @NAME for "
                     f"gin/models/NAME.gin, or a .gin path")
  return path


def _parse(gin_files, overrides, where: str):
  """Parses one configuration afresh; gin's errors become a message naming ``where``."""
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  gin.clear_config()  # Unlocks it too: register_training() may not add to a locked one.
  cli.register_training()
  try:
    cli.parse_args([f"--gin_file={f}" for f in gin_files] + [f"--gin.{o}" for o in overrides],
                   __doc__, argparse.ArgumentParser())
  except ValueError as error:
    raise SystemExit(f"{where}: {error}") from None


def plan(gin_files: Sequence[str], overrides: Sequence[str], sweeps, zipped: bool) -> list[Run]:
  """Every run of the sweep, each parsed once here so a bad key fails before any training."""
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  _parse(gin_files, overrides, "the base configuration")
  root = os.fspath(storage.path(cli.require("train.model_dir", "MODEL_DIR", "runs/sweep")))
  vocab_size = cli._value("ModelConfig.vocab_size")  # pylint: disable=protected-access
  runs, names = [], set()
  for index, settings in enumerate(combinations(sweeps, zipped)):
    name = run_name(settings)
    if name in names:
      raise SystemExit(f"two runs would share the directory {name}: make the values differ "
                       f"in letters or digits")
    names.add(name)
    files, extra = list(gin_files), []
    for key, value in settings:
      if key == MODEL_KEY:
        files.append(_model_file(value))
        extra.insert(0, f"ModelConfig.vocab_size={vocab_size}")
      else:
        extra.append(f"{key}={value}")
    model_dir = f"{root}/{name}"
    run = Run(index, name, tuple(settings), tuple(files),
              (*overrides, f"MODEL_DIR={model_dir}", *extra), model_dir)
    _parse(run.gin_files, run.overrides, f"run {name}")
    config = gin.config_str()
    for key, _ in settings:
      if "." not in key and key != MODEL_KEY and not re.search(rf"%{key}\b", config):
        raise SystemExit(f"--sweep {key}: no binding reads the macro %{key}, so sweeping it "
                         f"changes nothing; sweep a binding (e.g. train.learning_rate)")
    runs.append(run)
  return runs


def _train_steps() -> int:
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  return cli._value("train.train_steps")  # pylint: disable=protected-access


def _write_settings(run: Run, train_steps: int):
  """``sweep.json``: what the report shows for the run (written before it trains)."""
  directory = storage.writable_dir(run.model_dir, "MODEL_DIR")
  storage.write_text(directory / "sweep.json", json.dumps(
      {"index": run.index, "name": run.name, "settings": dict(run.settings),
       "gin_files": list(run.gin_files), "overrides": list(run.overrides),
       "train_steps": train_steps}, indent=1) + "\n")


def finished(model_dir, train_steps: int) -> bool:
  """Whether the run's newest complete checkpoint is its last step."""
  from meena_jax import checkpoints  # pylint: disable=import-outside-toplevel
  try:
    return checkpoints.checkpoint_step(model_dir) == train_steps
  except FileNotFoundError:
    return False


def run_locally(runs: Sequence[Run], out=None):
  """Trains the runs one after another in this process, skipping finished ones. A run that
  fails (a diverging learning rate is a normal sweep outcome) does not stop the others; the
  sweep exits naming the failed runs, and re-running it retries them from their checkpoints."""
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  out = out or sys.stdout
  failed = []
  for run in runs:
    where = f"[{run.index + 1}/{len(runs)}] {run.name}"
    _parse(run.gin_files, run.overrides, f"run {run.name}")
    steps = _train_steps()
    _write_settings(run, steps)
    if finished(run.model_dir, steps):
      print(f"{where}: finished ({steps} steps), skipped", file=out, flush=True)
      continue
    print(f"{where}: training to step {steps} in {run.model_dir}", file=out, flush=True)
    try:
      cli.configured_train()
    except Exception as error:  # pylint: disable=broad-except
      logging.getLogger("meena_jax.sweep").exception("run %s failed", run.name)
      print(f"{where}: failed: {type(error).__name__}: {error}", file=out, flush=True)
      failed.append(run.name)
  if failed:
    raise SystemExit(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)}")


def launch_on_pods(runs: Sequence[Run], args: argparse.Namespace, out=None):
  """One slice per run through tpu_pod's checks and command builder; detached launches."""
  out = out or sys.stdout
  later = []
  for run in runs:
    job = tpu_pod.make_job(args, tpu_name=f"{args.tpu_name}-{run.index}",
                           dry_run=args.dry_run)
    config = tpu_pod.load_run(run.gin_files, run.overrides)
    layout = tpu_pod.check(config, job.slice, compile_check=not args.skip_compile_check)
    storage_lines = (["# storage: not checked (--skip_storage_check)"]
                     if args.skip_storage_check else tpu_pod.check_storage(config))
    steps = tpu_pod.build_steps(job, config)
    print(f"## run {run.index + 1}/{len(runs)}: {run.name} on {job.tpu_name}", file=out)
    print("\n".join(tpu_pod.describe(config, job.slice, layout) + storage_lines), file=out)
    if args.dry_run:
      print("\n".join(tpu_pod.render(steps)), file=out, flush=True)
      continue
    try:
      _write_settings(run, _train_steps())
    except Exception as error:  # pylint: disable=broad-except  # No local GCS credentials.
      print(f"# {run.model_dir}/sweep.json not written ({error}); the report will show the "
            f"run by name only", file=out)
    tpu_pod.execute([s for s in steps if s.kind not in ("tail", "delete")], steps[-1], out)
    later += [s for s in steps if s.kind in ("tail", "delete")]
  if later:
    print("# all started; follow and delete them with:\n" + "\n".join(tpu_pod.render(later)),
          file=out)


def report(sweep_dir, output=None) -> tuple[str, storage.Path]:
  """(table, PNG path): one row per run directory under ``sweep_dir`` (run, settings, steps,
  final train loss, best eval perplexity); the PNG has every run's loss and eval curves."""
  from meena_jax import curves  # pylint: disable=import-outside-toplevel
  sweep_dir = storage.path(sweep_dir)
  entries = []
  for path in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
    info_file = path / "sweep.json"
    if not info_file.exists() and not (path / "metrics.jsonl").exists():
      continue
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    entries.append((info.get("index", len(entries)), path, info))
  if not entries:
    raise SystemExit(f"{sweep_dir}: no run directories (with sweep.json or metrics.jsonl)")
  entries.sort(key=lambda e: (e[0], e[1].name))
  rows, plotted = [("run", "settings", "steps", "final loss", "best eval ppl")], []
  for _, path, info in entries:
    settings = " ".join(f"{k}={v}" for k, v in info.get("settings", {}).items()) or "-"
    of = f"/{info['train_steps']}" if "train_steps" in info else ""
    if not (path / "metrics.jsonl").exists():
      rows.append((path.name, settings, f"0{of}", "-", "-"))
      continue
    train, evaluation = curves.read_metrics(path)
    last = max(train) if train else 0
    rows.append((path.name, settings, f"{last}{of}",
                 f"{train[last]:.3f}" if train else "-",
                 f"{min(evaluation.values()):.2f}" if evaluation else "-"))
    plotted.append(path)
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                     for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
           for row in rows]
  lines.insert(1, "  ".join("-" * width for width in widths))
  png = storage.path(output or sweep_dir / "sweep.png")
  if plotted:
    curves.plot_runs(plotted, png, labels=[p.name for p in plotted])
  return "\n".join(lines), png


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["report"]:
    parser = argparse.ArgumentParser(description="The table and curves of a sweep.")
    parser.add_argument("sweep_dir", help="the sweep's MODEL_DIR (local or gs://)")
    parser.add_argument("--output", help="PNG path (default: SWEEP_DIR/sweep.png)")
    args = parser.parse_args(argv[1:])
    table, png = report(args.sweep_dir, args.output)
    print(table)
    print(f"curves: {png}")
    return
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sweep", action="append", default=[], metavar="KEY=[V1, V2, ...]",
                      help="values of a gin binding, macro or MODEL (repeatable)")
  parser.add_argument("--zip", action="store_true",
                      help="run i takes the i-th value of every --sweep (lists of one length)")
  parser.add_argument("--pod", action="store_true", help="one TPU slice per run")
  parser.add_argument("--dry_run", action="store_true", help="with --pod: print, run nothing")
  tpu_pod.add_pod_flags(parser, required=False)
  gin.clear_config()  # Unlocks it too: register_training() may not add to a locked one.
  cli.register_training()
  args = cli.parse_args(argv, __doc__, parser)
  if not args.sweep:
    parser.error("give at least one --sweep KEY=[V1, V2, ...]")
  overrides = [a[len("--gin."):] for a in argv if a.startswith("--gin.")]
  runs = plan(args.gin_file, overrides, [parse_sweep(s) for s in args.sweep], args.zip)
  if args.pod:
    missing = [f"--{f}" for f in ("tpu_name", "zone", "project", "accelerator_type")
               if not getattr(args, f)]
    if missing:
      raise SystemExit(f"--pod needs {', '.join(missing)}")
    launch_on_pods(runs, args)
  else:
    from meena_jax import cli  # pylint: disable=import-outside-toplevel
    cli.configure_logging()
    run_locally(runs)


if __name__ == "__main__":
  main()
