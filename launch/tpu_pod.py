"""Train on a Cloud TPU slice with one command: create it, install meena_jax on every worker,
start the same training command on all of them, follow the log, delete the slice.

  python launch/tpu_pod.py --tpu_name=meena-tiny --zone=europe-west4-a --project=my-project \\
      --accelerator_type=v3-32 --git_ref=main --repo_url=https://github.com/ORG/meena_jax \\
      --gin_file=gin/runs/et_tiny_chitchat.gin --gin.MODEL_DIR=gs://BUCKET/tiny \\
      --gin.BATCH_SIZE=256 --dry_run

``--dry_run`` prints the plan (slice, mesh, batch split, train state per device, the storage
checks) and the ``gcloud`` commands, and creates nothing. Without it the commands run one after another and the
first failure stops the launch with that command's output. Each worker gets the repository (a
git ref, or a wheel plus ``gin/``) in ``~/meena_jax`` with a Python 3.11 venv made by uv (TPU VM
images ship 3.10), and every worker runs the same ``python -m meena_jax.train <gin flags>``,
with ``--distributed`` on multi-host slices: each process then calls
``jax.distributed.initialize()`` with no arguments, which finds the slice from the TPU VM
metadata. The gin config is read here first, overrides included, so a mesh that does not fit
the slice, a batch that does not split, a local MODEL_DIR on a multi-host slice or a train state
larger than a device's memory is refused before anything is created.

With libtpu installed (``pip install -e '.[tpu]'``) the check compiles the run's train and eval
steps for the slice first (``meena_jax.compile``: nothing is allocated, nothing runs) and refuses
a config whose compiled memory exceeds a device's HBM, naming the numbers and the largest
buffers, and prints the predicted step time and MFU. Without libtpu, or with
``--skip_compile_check``, it adds up parameters, gradients and Adafactor slots instead, which
counts no activations, and says so. Slice facts: ``meena_jax.slices``.

Storage is checked before a slice is paid for, with this machine's credentials (application
default credentials: ``gcloud auth application-default login``): an object is written under
``MODEL_DIR`` and deleted, and a ``gs://`` ``DATA_DIR`` must hold the prepared task (otherwise
the launch stops and names the prepare command); its token store is looked for too. A typo in
a bucket name costs seconds, not a pod start-up. ``--skip_storage_check`` skips this.
"""
import argparse
import collections
import dataclasses
import pathlib
import re
import shlex
import subprocess
import sys
import time
from typing import Optional, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
from meena_jax import slices  # pylint: disable=wrong-import-position
REMOTE_DIR = "~/meena_jax"  # Every worker's copy of the repository (or of its gin/ files).
JAX_TPU = '"jax[tpu]"'  # jax with libtpu, at the version meena_jax's own requirement allows.
POLL_SECONDS = 30  # How often a queued resource's state is read while waiting for ACTIVE.
GIB = slices.GIB


def parse_accelerator(text: str) -> slices.Slice:
  """``v3-32`` -> its Slice (``meena_jax.slices``); a bad type exits naming the flag."""
  try:
    return slices.parse_accelerator(text)
  except ValueError as error:
    raise SystemExit(str(error)) from None


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """What the launcher needs from a run's gin config (overrides applied)."""
  gin_files: tuple
  overrides: tuple  # "KEY=VALUE", as given after --gin.
  model_dir: str
  batch_size: int
  mesh_data: int
  mesh_model: int
  num_microbatches: int
  input_shards: Optional[int]
  settings: dict  # train.programs' settings (model_config included): what gets compiled.
  task: dict = dataclasses.field(default_factory=dict)  # get_task's bound arguments.
  data_cache_dir: Optional[str] = None  # Where the token store lives (train.data_cache_dir).

  @property
  def model_config(self):
    return self.settings["model_config"]


def read_run(gin_files: Sequence[str], overrides: Sequence[str]) -> RunConfig:
  """The RunConfig of the gin state already parsed from ``gin_files`` and ``overrides``."""
  from meena_jax import cli, compile  # pylint: disable=import-outside-toplevel,redefined-builtin
  model_dir = cli.require("train.model_dir", "MODEL_DIR", "gs://BUCKET/run")
  settings = {"mesh_data": -1, "mesh_model": 1, "num_microbatches": 1,
              **cli.bound_arguments("train", compile.TRAIN_SETTINGS),
              "model_config": cli.model_config()}
  return RunConfig(
      gin_files=tuple(gin_files), overrides=tuple(overrides), model_dir=str(model_dir),
      batch_size=settings["batch_size"], mesh_data=settings["mesh_data"],
      mesh_model=settings["mesh_model"], num_microbatches=settings["num_microbatches"],
      input_shards=cli.bound_arguments("train", ["input_shards"]).get("input_shards"),
      settings=settings, task=cli.bound_arguments("get_task", TASK_ARGUMENTS),
      data_cache_dir=cli.bound_arguments("train", ["data_cache_dir"]).get("data_cache_dir"))


TASK_ARGUMENTS = ("name", "data_dir", "source_dir", "vocab_file", "vocab_size",
                  "skip_malformed", "config")


def check_storage(run: RunConfig) -> list[str]:
  """Refuses, one line naming the setting, a ``MODEL_DIR`` this machine cannot write (an
  object is written and deleted: a missing bucket or a 403 says so) or a ``gs://``
  ``DATA_DIR`` without the prepared task; returns the lines the plan prints: what was checked,
  the token store's state, and what could not be checked from here."""
  from meena_jax import storage, token_store  # pylint: disable=import-outside-toplevel
  if storage.is_remote(run.model_dir):
    try:
      storage.writable_dir(run.model_dir, "MODEL_DIR")
    except storage.StorageError as error:
      raise SystemExit(f"{error}; fix it before a slice is created") from None
    lines = [f"# storage: MODEL_DIR={run.model_dir} is writable (an object written and "
             f"deleted)"]
  else:
    lines = [f"# storage: MODEL_DIR={run.model_dir} is the TPU VM's own disk: not checked "
             f"from here"]
  name, data_dir = run.task.get("name"), run.task.get("data_dir")
  if name is None or data_dir is None:
    return lines + ["# storage: the run's task is not get_task(name, data_dir): DATA_DIR not "
                    "checked"]
  if not storage.is_remote(data_dir):
    return lines + [f"# storage: DATA_DIR={data_dir} is each worker's own disk: every worker "
                    f"prepares task {name} itself at start; a gs:// DATA_DIR prepared ahead "
                    f"saves that"]
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
  kwargs = {k: v for k, v in run.task.items() if k not in ("name", "data_dir") and v is not None}
  try:
    storage.check_bucket(data_dir, "DATA_DIR")
    builder = seqio_tasks.SOURCES[name](data_dir=data_dir, **kwargs)
    prepared = builder.is_prepared()
  except storage.StorageError as error:
    raise SystemExit(f"{error}; fix it before a slice is created") from None
  if not prepared:
    raise SystemExit(f"DATA_DIR={data_dir}: task {name} is not prepared there; prepare it "
                     f"first (every host would wait on it): python -m meena_jax prepare "
                     f"{name} --data_dir {data_dir}")
  lines.append(f"# storage: DATA_DIR={data_dir} holds task {name} ({builder.info.full_name})")
  task = seqio_tasks.get_task(name, data_dir, **kwargs)
  cut = {"inputs": run.settings["input_length"], "targets": run.settings["target_length"]}
  path = token_store.store_dir(run.data_cache_dir or data_dir, task, "train", cut)
  store = token_store.open_store(path)
  lines.append(f"# storage: token store {path}: " + (
      f"{len(store):,} examples in {len(store.meta['files'])} files; each host reads its "
      f"own 1/{run.input_shards or '<hosts>'}" if store is not None else
      "missing: process 0 tokenises the train split at start while the others wait"))
  return lines


def load_run(gin_files: Sequence[str], overrides: Sequence[str]) -> RunConfig:
  """Parses a run's gin files and ``KEY=VALUE`` overrides afresh and reads its RunConfig."""
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  gin.clear_config()  # Unlocks it too: register_training() may not add to a locked one.
  cli.register_training()
  cli.parse_args([f"--gin_file={f}" for f in gin_files] + [f"--gin.{o}" for o in overrides],
                 __doc__, argparse.ArgumentParser())
  return read_run(gin_files, overrides)


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a run sits on a slice: mesh sizes, batch rows and train-state bytes per device."""
  data: int
  model: int
  rows_per_host: int
  rows_per_device: int
  params_bytes: float
  optimizer_bytes: float
  compiled: Optional[dict] = None  # meena_jax.compile's report; None: the analytic check.


def resolve_mesh(run: RunConfig, slice_: slices.Slice) -> tuple[int, int]:
  """(data, model) sizes on the slice, as ``partitioning.make_mesh`` will choose them."""
  from meena_jax import partitioning  # pylint: disable=import-outside-toplevel
  try:
    return partitioning.mesh_shape(run.mesh_data, run.mesh_model, slice_.devices)
  except ValueError as error:
    raise SystemExit(f"the gin mesh MESH_DATA={run.mesh_data} x MESH_MODEL={run.mesh_model} "
                     f"(train.mesh_data, train.mesh_model) on --accelerator_type="
                     f"{slice_.accelerator_type} ({slice_.devices} JAX devices): "
                     f"{error}") from None


def check(run: RunConfig, slice_: slices.Slice, keep: bool = False,
          compile_check: bool = True) -> Layout:
  """Refuses, with a message naming the setting, a run that cannot work on ``slice_``; with
  libtpu (and ``compile_check``) the fit is decided by the compiled train and eval steps."""
  data, model = resolve_mesh(run, slice_)
  batch, hosts, micro = run.batch_size, slice_.hosts, run.num_microbatches
  shards = run.input_shards or hosts
  if shards % hosts or batch % shards:
    raise SystemExit(f"global batch BATCH_SIZE={batch} (train.batch_size) does not split over "
                     f"{shards} input shards on the {hosts} hosts of "
                     f"{slice_.accelerator_type}: use a multiple of {shards}")
  if batch % (data * micro):
    raise SystemExit(f"global batch BATCH_SIZE={batch} (train.batch_size) in {micro} "
                     f"microbatches (train.num_microbatches) does not divide over the mesh's "
                     f"data axis of {data} devices: use a multiple of {data * micro}, or "
                     f"another MESH_DATA")
  if not run.model_dir.startswith("gs://"):
    if hosts > 1:
      raise SystemExit(f"MODEL_DIR={run.model_dir}: {slice_.accelerator_type} has {hosts} hosts, "
                       f"which must all write one checkpoint: use a gs:// path "
                       f"(--gin.MODEL_DIR=gs://BUCKET/run)")
    if not keep:
      raise SystemExit(f"MODEL_DIR={run.model_dir} is on the TPU VM's disk, which is deleted "
                       f"with the slice: use a gs:// path, or pass --keep")
  params, optimizer = state_bytes_per_device(run, data, model)
  layout = Layout(data, model, batch // hosts, batch // data, params, optimizer)
  hbm = slice_.hbm_bytes
  if compile_check and slices.libtpu_available():
    return dataclasses.replace(layout, compiled=compiled_check(run, slice_, model))
  if 2 * params + optimizer > hbm:
    raise SystemExit(
        f"the train state does not fit: {_size(params)} of parameters, the same again of "
        f"gradients and {_size(optimizer)} of Adafactor state per device exceed the "
        f"{_size(hbm)} of a {slice_.accelerator_type} device; raise MESH_MODEL "
        f"(now {model}) or use a larger slice")
  return layout


def compiled_check(run: RunConfig, slice_: slices.Slice, model: int) -> dict:
  """Compiles the train and eval steps for the slice; refuses one that does not fit a
  device's HBM (the eval step beside the optimizer state it leaves resident), naming the
  bytes and the largest buffers. Returns ``meena_jax.compile``'s report."""
  from meena_jax import compile  # pylint: disable=import-outside-toplevel,redefined-builtin
  advice = f"raise MESH_MODEL (now {model}), lower BATCH_SIZE, or use a larger slice"
  print(f"# compiling the train and eval steps for {slice_.accelerator_type} (libtpu, "
        f"compile only; minutes for a large model) ...", flush=True)
  try:
    report = compile.compile_run(run.settings, slice_, programs=("train", "eval"),
                                 progress=lambda line: print(f"#   {line.strip()}", flush=True))
  except ValueError as error:
    raise SystemExit(str(error)) from None
  except Exception as error:  # pylint: disable=broad-except  # XLA's runtime error types vary.
    if "RESOURCE_EXHAUSTED" not in str(error):
      raise
    raise SystemExit(f"the run does not fit a {slice_.accelerator_type} device: the compiler "
                     f"says {str(error).splitlines()[0]}; {advice}") from None
  for name, entry in report["programs"].items():
    memory = entry["memory"]
    needed = memory["total"] + memory.get("resident_beside", 0)
    if needed > slice_.hbm_bytes:
      largest = "; ".join(f"{_size(b['bytes'])} {b['what']}" for b in entry["largest"][:3])
      raise SystemExit(
          f"the compiled {name} does not fit: {_size(needed)} per device (arguments "
          f"{_size(memory['arguments'])}, temporaries {_size(memory['temps'])}"
          + (f", optimizer state beside it {_size(memory['resident_beside'])}"
             if memory.get("resident_beside") else "")
          + f") exceed the {_size(slice_.hbm_bytes)} of a {slice_.accelerator_type} device; "
          f"largest buffers: {largest}; {advice}")
  return report


def state_bytes_per_device(run: RunConfig, data: int, model: int) -> tuple[float, float]:
  """(parameter bytes, Adafactor bytes) one device holds on a (data, model) mesh: the train
  state of ``train.programs`` on an abstract mesh (nothing is allocated; an uneven split fails
  naming the parameter). Activations and the transient gradients are not included."""
  import jax  # pylint: disable=import-outside-toplevel

  from meena_jax import partitioning, state, train  # pylint: disable=import-outside-toplevel
  mesh = jax.sharding.AbstractMesh((data, model), partitioning.MESH_AXES)
  settings = {k: v for k, v in run.settings.items() if k not in ("mesh_data", "mesh_model")}
  try:
    abstract = train.programs(mesh=mesh, **settings).state
  except ValueError as error:
    raise SystemExit(str(error)) from None
  return state.bytes_per_device(abstract.params), state.bytes_per_device(abstract.opt_state)


def _size(n: float) -> str:
  return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 2 ** 20:.1f} MiB"


def describe(run: RunConfig, slice_: slices.Slice, layout: Layout) -> list[str]:
  """The plan as comment lines: what the dry run and the launch print first."""
  return _describe_state(run, slice_, layout) + _describe_compiled(run, slice_, layout)


def _describe_compiled(run: RunConfig, slice_: slices.Slice, layout: Layout) -> list[str]:
  if layout.compiled is None:
    why = ("libtpu is not installed (pip install -e '.[tpu]')" if not slices.libtpu_available()
           else "--skip_compile_check")
    return [f"# fit checked by arithmetic only ({why}): activations are not counted, and "
            f"there is no predicted step time"]
  train = layout.compiled["programs"]["train_step"]
  memory = train["memory"]
  lines = [f"# compiled train step per device: {_size(memory['total'])} of "
           f"{_size(slice_.hbm_bytes)} (arguments {_size(memory['arguments'])}, temporaries "
           f"{_size(memory['temps'])}), headroom {_size(memory['headroom'])}"]
  if train.get("predicted_s"):
    lines.append(f"# predicted by the compiler: {train['predicted_s']:.4f} s per step, MFU "
                 f"{train['mfu']:.1%}, {train['target_tokens_per_s']:,.0f} target tokens/s, "
                 f"{train['days_for_train_steps']:.2f} days for TRAIN_STEPS="
                 f"{run.settings['train_steps']}")
  return lines


def _describe_state(run: RunConfig, slice_: slices.Slice, layout: Layout) -> list[str]:
  g = slice_.generation
  params, optimizer = layout.params_bytes, layout.optimizer_bytes
  return [
      (f"# {slice_.accelerator_type}: {slice_.devices} JAX devices (one {g.device} each) on "
       f"{slice_.hosts} host{'s' if slice_.hosts > 1 else ''}, {_size(g.hbm_gib * GIB)} HBM each"),
      (f"# mesh: data={layout.data} x model={layout.model}; global batch {run.batch_size} = "
       f"{layout.rows_per_host} per host = {layout.rows_per_device} per data shard"),
      (f"# train state per device: parameters {_size(params)} + Adafactor "
       f"{_size(optimizer)} = {_size(params + optimizer)}; with gradients "
       f"{_size(2 * params + optimizer)} (activations not counted)"),
  ]


@dataclasses.dataclass(frozen=True)
class Job:
  """Where and how to run: the slice, its name and place, and what to install."""
  tpu_name: str
  zone: str
  project: str
  slice: slices.Slice
  runtime_version: str
  spot: bool = False
  queued: bool = False
  git_ref: Optional[str] = None
  repo_url: Optional[str] = None
  wheel: Optional[str] = None  # Relative to REPO_ROOT when inside it.


@dataclasses.dataclass(frozen=True)
class Step:
  kind: str   # create, wait, copy, install, start, tail, delete
  note: str
  argv: tuple


def build_steps(job: Job, run: RunConfig) -> list[Step]:
  """The gcloud commands of a launch, in order (``execute`` runs them from REPO_ROOT)."""
  where = (f"--zone={job.zone}", f"--project={job.project}")
  vm = ("gcloud", "compute", "tpus", "tpu-vm")
  queued = ("gcloud", "compute", "tpus", "queued-resources")
  spot = ("--spot",) if job.spot else ()

  def ssh(worker: str, command: str) -> tuple:
    return vm + ("ssh", job.tpu_name, *where, f"--worker={worker}", f"--command={command}")

  steps = []
  if job.queued:
    steps.append(Step("create", "queue a request for the slice", queued + (
        "create", job.tpu_name, f"--node-id={job.tpu_name}", *where,
        f"--accelerator-type={job.slice.accelerator_type}",
        f"--runtime-version={job.runtime_version}", *spot)))
    steps.append(Step("wait", f"until the request is ACTIVE (polled every {POLL_SECONDS} s)",
                      queued + ("describe", job.tpu_name, *where, "--format=value(state.state)")))
  else:
    steps.append(Step("create", "create the slice", vm + (
        "create", job.tpu_name, *where, f"--accelerator-type={job.slice.accelerator_type}",
        f"--version={job.runtime_version}", *spot)))

  # TPU VM images ship Python 3.10 and meena_jax needs 3.11: uv makes a 3.11 venv per worker.
  venv = (f"python3 -m pip install --quiet --user uv && ~/.local/bin/uv venv --quiet "
          f"--allow-existing --python 3.11 {REMOTE_DIR}/.venv && ~/.local/bin/uv pip install "
          f"--quiet --python {REMOTE_DIR}/.venv/bin/python")
  if job.wheel:
    wheel = pathlib.PurePosixPath(job.wheel).name
    steps.append(Step("copy", "make the working directory on every worker",
                      ssh("all", f"mkdir -p {REMOTE_DIR}")))
    steps.append(Step("copy", "copy the wheel and the gin files to every worker", vm + (
        "scp", "--recurse", job.wheel, "gin", f"{job.tpu_name}:{REMOTE_DIR}/", *where,
        "--worker=all")))
    steps.append(Step("install", "install meena_jax and jax[tpu] on every worker", ssh(
        "all", f"{venv} {REMOTE_DIR}/{wheel} {JAX_TPU}")))
  else:
    ref, url = shlex.quote(job.git_ref), shlex.quote(job.repo_url)
    steps.append(Step("install", f"check out {job.git_ref} and install it on every worker", ssh(
        "all", f"(test -d {REMOTE_DIR} || git clone --quiet --no-checkout {url} {REMOTE_DIR}) "
        f"&& cd {REMOTE_DIR} && git fetch --quiet origin {ref} && git checkout --quiet "
        f"--detach FETCH_HEAD && {venv} -e . {JAX_TPU}")))

  train = [".venv/bin/python", "-m", "meena_jax.train",
           *(f"--gin_file={f}" for f in run.gin_files), *(f"--gin.{o}" for o in run.overrides)]
  if job.slice.hosts > 1:
    train.append("--distributed")
  # The job outlives the ssh session (its own session, no terminal); its exit status lands in
  # train.rc for `tail` to return, and train.pid lives exactly as long as the job.
  train_and_status = _double_quote(shlex.join(train) + "; echo $? > train.rc")
  steps.append(Step("start", "start training on every worker (each logs to its train.log)", ssh(
      "all", f"cd {REMOTE_DIR} || exit 1; rm -f train.rc; setsid --wait nohup bash -c "
      f"{train_and_status} > train.log 2>&1 < /dev/null & echo $! > train.pid")))
  steps.append(Step("tail", "follow worker 0's log until training ends; exit with its status",
                    ssh("0", f"tail -n +1 --pid=$(cat {REMOTE_DIR}/train.pid) -f "
                             f"{REMOTE_DIR}/train.log; exit $(cat {REMOTE_DIR}/train.rc "
                             f"2>/dev/null || echo 1)")))
  if job.queued:
    steps.append(Step("delete", "delete the slice and its request", queued + (
        "delete", job.tpu_name, *where, "--force", "--quiet")))
  else:
    steps.append(Step("delete", "delete the slice", vm + (
        "delete", job.tpu_name, *where, "--quiet")))
  return steps


def _double_quote(text: str) -> str:
  """``text`` as one double-quoted shell word (reads better than nested single quotes)."""
  return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def render(steps: Sequence[Step]) -> list[str]:
  return [line for s in steps for line in (f"# {s.kind}: {s.note}", shlex.join(s.argv))]


def execute(steps: Sequence[Step], delete: Optional[Step] = None, out=None):
  """Runs ``steps`` from REPO_ROOT, streaming their output; the first failure exits with that
  command's last output lines (and the delete command while a slice may be up)."""
  out = out or sys.stdout
  created = False
  for step in steps:
    print(f"# {step.kind}: {step.note}\n$ {shlex.join(step.argv)}", file=out, flush=True)
    if step.kind == "wait":
      _wait_active(step, out)
    else:
      code, tail = _run(step.argv, out)
      if code:
        hint = (f"\nThe slice may still be up; delete it with:\n  {shlex.join(delete.argv)}"
                if delete is not None and created and step is not delete else "")
        raise SystemExit(f"{step.kind} failed (exit {code}): {shlex.join(step.argv)}\n"
                         f"--- its last output ---\n{tail}{hint}")
    created = created or step.kind == "create"


def _run(argv, out=None) -> tuple[int, str]:
  """(exit code, last 40 lines) of ``argv``, its output streamed to ``out`` when given."""
  try:
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace")
  except FileNotFoundError:
    raise SystemExit(f"{argv[0]}: not found on PATH (install the Google Cloud CLI, or "
                     f"use --dry_run)") from None
  last = collections.deque(maxlen=40)
  for line in process.stdout:
    if out is not None:
      out.write(line)
      out.flush()
    last.append(line)
  return process.wait(), "".join(last).rstrip()


def _wait_active(step: Step, out):
  """Polls a queued resource until ACTIVE; FAILED or SUSPENDED ends the launch."""
  while True:
    code, text = _run(step.argv)
    state = text.splitlines()[-1].strip() if text else ""
    if code:
      raise SystemExit(f"wait failed (exit {code}): {shlex.join(step.argv)}\n{text}")
    if state == "ACTIVE":
      return
    if state in ("FAILED", "SUSPENDED"):
      raise SystemExit(f"the queued resource is {state}: {shlex.join(step.argv)}")
    print(f"# state {state or '?'}; next look in {POLL_SECONDS} s", file=out, flush=True)
    time.sleep(POLL_SECONDS)


def add_pod_flags(parser: argparse.ArgumentParser, required: bool = True):
  """The slice and install flags (the sweep reuses them, optional unless --pod)."""
  group = parser.add_argument_group("TPU slice")
  group.add_argument("--tpu_name", required=required,
                     help="name of the TPU VM (and queued resource)")
  group.add_argument("--zone", required=required, help="e.g. europe-west4-a")
  group.add_argument("--project", required=required, help="Google Cloud project id")
  group.add_argument("--accelerator_type", required=required,
                     help="v3-8 ... v3-2048, v4-N, v5p-N, v5litepod-N (v5e-N)")
  group.add_argument("--runtime_version", help="TPU VM image (default: the generation's)")
  group.add_argument("--spot", action="store_true", help="spot (preemptible) capacity")
  group.add_argument("--skip_compile_check", action="store_true",
                     help="check the fit by arithmetic, without compiling the steps for the "
                          "slice (what happens anyway without libtpu)")
  group.add_argument("--skip_storage_check", action="store_true",
                     help="do not check MODEL_DIR and DATA_DIR from this machine (no "
                          "credentials here)")
  group.add_argument("--queued", action="store_true",
                     help="create through a queued resource and wait until it is ACTIVE")
  group = parser.add_argument_group("what to install (one of)")
  group.add_argument("--git_ref", help="branch, tag or commit of --repo_url to check out")
  group.add_argument("--repo_url", help="git URL of this repository (with --git_ref)")
  group.add_argument("--wheel", help="a local wheel of meena_jax (python -m pip wheel "
                                     "--no-deps -w dist .); the gin/ directory is copied too")


def make_job(args: argparse.Namespace, tpu_name: Optional[str] = None,
             dry_run: bool = False) -> Job:
  """A Job from the pod flags; the install source and gin files are checked here."""
  slice_ = parse_accelerator(args.accelerator_type)
  if bool(args.wheel) == bool(args.git_ref):
    raise SystemExit("give what to install: --wheel=dist/meena_jax-0.1.0-py3-none-any.whl, or "
                     "--git_ref=REF with --repo_url=URL (not both)")
  if args.git_ref and not args.repo_url:
    raise SystemExit(f"--git_ref={args.git_ref} needs --repo_url (the workers clone it)")
  wheel = args.wheel
  if wheel:
    path = pathlib.Path(wheel).resolve()
    if not dry_run and not path.is_file():
      raise SystemExit(f"--wheel={wheel}: no such file")
    wheel = str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
  for gin_file in getattr(args, "gin_file", []):
    if pathlib.Path(gin_file).is_absolute() or not (REPO_ROOT / gin_file).is_file():
      raise SystemExit(f"--gin_file={gin_file}: workers read gin files from their copy of the "
                       f"repository; give a path relative to {REPO_ROOT}")
  if getattr(args, "gin_search_path", None):
    raise SystemExit("--gin_search_path: workers see only the repository's gin files")
  return Job(tpu_name or args.tpu_name, args.zone, args.project, slice_,
             args.runtime_version or slice_.generation.runtime_version, args.spot,
             args.queued, args.git_ref, args.repo_url, wheel)


def main(argv=None):
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_pod_flags(parser)
  parser.add_argument("--dry_run", action="store_true", help="print the plan; run nothing")
  parser.add_argument("--detach", action="store_true",
                      help="return once training has started; print how to follow and delete")
  parser.add_argument("--keep", action="store_true", help="do not delete the slice at the end")
  gin.clear_config()  # Unlocks it too: register_training() may not add to a locked one.
  cli.register_training()
  args = cli.parse_args(argv, __doc__, parser)
  job = make_job(args, dry_run=args.dry_run)
  run = read_run(args.gin_file, [a[len("--gin."):] for a in argv if a.startswith("--gin.")])
  layout = check(run, job.slice, keep=args.keep, compile_check=not args.skip_compile_check)
  storage_lines = (["# storage: not checked (--skip_storage_check)"]
                   if args.skip_storage_check else check_storage(run))
  steps = build_steps(job, run)
  delete = steps[-1]
  if args.keep:
    steps = steps[:-1]
  later = []
  if args.detach:
    later = [s for s in steps if s.kind in ("tail", "delete")]
    steps = [s for s in steps if s.kind not in ("tail", "delete")]
  print("\n".join(describe(run, job.slice, layout) + storage_lines))
  if args.dry_run:
    print("\n".join(render(steps)))
  else:
    execute(steps, delete)
  if later:
    print("# started; later:\n" + "\n".join(render(later)))


if __name__ == "__main__":
  main()
