"""Compile a run's real programs for a TPU slice on this machine, and report what they cost.

  python -m meena_jax compile --gin_file=gin/runs/meena_2.6b_pod.gin --accelerator_type=v3-2048
  python -m meena_jax compile --gin_file=gin/runs/et_tiny_chitchat.gin --accelerator_type=v4-8 \\
      --gin.MESH_MODEL=4 --programs=train,eval,sample --json=compile.jsonl --hlo_dir=/tmp/hlo

It takes exactly the gin files and overrides ``meena_jax.train`` takes, plus the slice as the
launcher spells it. The train and eval steps are the trainer's own (``train.programs``); the
sampler is the chat's (``decoding.sampler`` with ``DecodingConfig`` and ``load_responder``'s
batch, context length and mesh), on the slice's first host. Each is lowered with abstract
inputs on a mesh of compile-only TPU devices and compiled by libtpu: nothing is allocated or
run. Per device it reports memory against HBM, XLA's FLOP count beside the model's matmul
FLOPs, the compiler's predicted step time (``optimal_seconds``) with tokens/s, days for
TRAIN_STEPS and MFU, collectives by kind and mesh axis, and where the estimated cycles go. All
figures are the compiler's predictions, not measurements on hardware.
"""
import contextlib
import functools
import logging
import pathlib
import sys
import tempfile
import time
import warnings
from typing import Callable, Optional, Sequence

import jax

from meena_jax import decoding, hlo_analysis, partitioning, slices
from meena_jax import state as state_lib
from meena_jax.model import Seq2Seq, loss_fn, model_inputs

log = logging.getLogger("meena_jax.compile")
PROGRAMS = ("train", "eval", "sample")
# ``train.programs``' settings, read from the ``train`` bindings.
TRAIN_SETTINGS = ("batch_size", "input_length", "target_length", "train_steps", "learning_rate",
                  "constant_steps", "lr_schedule", "num_microbatches", "eval_batch_size",
                  "mesh_data", "mesh_model", "adafactor_min_dim_to_factor",
                  "packed_input_length", "packed_target_length")
CHAT_SETTINGS = {"batch_size": 8, "context_length": 128, "mesh_data": -1, "mesh_model": 1}


@contextlib.contextmanager
def _no_persistent_cache():
  """Compiles past the persistent compilation cache: a compile-only TPU executable cannot be
  read back from it (no client to load into), a Meena entry is gigabytes, and the report's
  compile seconds must be the compiler's, not a disk read's. (jax decides once per process
  whether the cache is in use: in a process that already compiled through it, such as a test
  session or a notebook, the read still happens and fails, and the program is compiled; its
  warning says nothing the user can act on, so it is filtered here.)"""
  before = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  try:
    with warnings.catch_warnings():
      warnings.filterwarnings("ignore", "Error reading persistent compilation cache entry",
                              UserWarning)
      yield
  finally:
    jax.config.update("jax_enable_compilation_cache", before)


def compile_run(settings: dict, slice_: slices.Slice, *, devices: Optional[list] = None,
                programs: Sequence[str] = PROGRAMS,
                decoding_config: Optional[decoding.DecodingConfig] = None,
                chat: Optional[dict] = None, hlo_dir: Optional[str] = None,
                progress: Callable[[str], None] = print) -> dict:
  """Compiles ``programs`` of the run ``settings`` (``train``'s keyword arguments, with
  ``model_config``) for ``slice_`` and returns the report (``results`` of a bench record).

  ``devices`` default to the slice's compile-only TPU devices. ``chat`` overrides
  ``CHAT_SETTINGS`` for the sampler. Raises ``ValueError`` naming the setting when the mesh or a
  parameter does not divide.
  """
  from meena_jax import train  # pylint: disable=import-outside-toplevel
  devices = devices if devices is not None else slices.topology_devices(slice_)
  try:
    mesh = partitioning.make_mesh(settings.get("mesh_data", -1), settings.get("mesh_model", 1),
                                  devices)
  except ValueError as error:
    raise ValueError(f"MESH_DATA x MESH_MODEL (train.mesh_data, train.mesh_model) on "
                     f"{slice_.accelerator_type}: {error}") from None
  run = train.programs(mesh=mesh, **{k: v for k, v in settings.items()
                                      if k not in ("mesh_data", "mesh_model")})
  model_config = settings["model_config"]
  report = {"accelerator_type": slice_.accelerator_type, "devices": mesh.size,
            "hosts": slice_.hosts, "mesh": dict(mesh.shape),
            "hbm_bytes": slice_.hbm_bytes, "peak_flops": slice_.peak_flops,
            "parameters": sum(x.size for x in jax.tree_util.tree_leaves(run.state.params)),
            "param_bytes": state_lib.bytes_per_device(run.state.params),
            "optimizer_bytes": state_lib.bytes_per_device(run.state.opt_state),
            "programs": {}}
  forward = functools.partial(_forward_loss, run.model)

  def one(name, jitted, args, program_mesh, model_flops=None):
    progress(f"compiling {name} for {slice_.accelerator_type} "
             f"(mesh {dict(program_mesh.shape)}) ...")
    started = time.perf_counter()
    with partitioning.activate(program_mesh), _no_persistent_cache(), \
        tempfile.TemporaryDirectory() as dump:
      compiled = jitted.lower(*args).compile({"xla_dump_to": dump})
      seconds = time.perf_counter() - started
      assignment = "".join(p.read_text() for p in pathlib.Path(dump).glob(
          "*after_optimizations-buffer-assignment.txt"))
      cost = hlo_analysis.analyze(name, compiled, seconds, program_mesh, args, assignment)
    if hlo_dir:
      pathlib.Path(hlo_dir).mkdir(parents=True, exist_ok=True)
      (pathlib.Path(hlo_dir) / f"{name}.hlo.txt").write_text(compiled.as_text())
    entry = {"mesh": dict(program_mesh.shape), **_entry(cost, slice_, model_flops)}
    report["programs"][name] = entry
    progress(f"  {name}: compiled in {seconds:.0f} s; {_gib(entry['memory']['total'])} of "
             f"{_gib(slice_.hbm_bytes)} per device")
    return compiled

  if "train" in programs:
    flops = 3 * hlo_analysis.matmul_flops(forward, run.state.params, run.train_batch)
    one("train_step", run.train_step, (run.state, run.train_batch, run.key), mesh,
        flops / mesh.size)
    entry = report["programs"]["train_step"]
    entry["memory"]["parameters"] = report["param_bytes"]
    entry["memory"]["optimizer"] = report["optimizer_bytes"]
    seconds = entry.get("predicted_s")
    if seconds:
      tokens = settings["batch_size"] * settings["target_length"]
      entry["target_tokens_per_s"] = tokens / seconds
      entry["days_for_train_steps"] = settings["train_steps"] * seconds / 86400
  if "eval" in programs:
    flops = hlo_analysis.matmul_flops(forward, run.state.params, run.eval_batch)
    one("eval_step", run.score, (run.state.params, run.eval_batch), mesh, flops / mesh.size)
    # While the trainer evaluates, the optimizer state stays in HBM beside the eval program.
    entry = report["programs"]["eval_step"]
    entry["memory"]["resident_beside"] = report["optimizer_bytes"]
    entry["memory"]["headroom"] -= report["optimizer_bytes"]
  if "sample" in programs:
    chat = {**CHAT_SETTINGS, **(chat or {})}
    config = decoding_config or decoding.DecodingConfig()
    host = [d for d in devices if d.process_index == devices[0].process_index]
    try:
      chat_mesh = partitioning.make_mesh(chat["mesh_data"], chat["mesh_model"], host)
    except ValueError as error:
      raise ValueError(f"load_responder.mesh_data x load_responder.mesh_model on one host of "
                       f"{slice_.accelerator_type}: {error}") from None
    model = Seq2Seq(model_config)
    params = state_lib.abstract_params(model, chat_mesh)
    tokens = jax.ShapeDtypeStruct((chat["batch_size"], chat["context_length"]), jax.numpy.int32,
                                  sharding=partitioning.batch_sharding(chat_mesh))
    key = jax.ShapeDtypeStruct((), run.key.dtype, sharding=partitioning.replicated(chat_mesh))
    one("sample", decoding.sampler(model, config, chat_mesh), (params, tokens, key), chat_mesh)
    first, following = decoding.sampler_steps(model, config, chat_mesh)
    compiled = one("sample_first_step", first, (params, tokens, key), chat_mesh)
    shapes = jax.eval_shape(first, params, tokens, key)
    state = jax.tree_util.tree_map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        shapes, compiled.output_shardings)
    one("sample_next_step", following, (params, state), chat_mesh)
    entries = report["programs"]
    if entries["sample_first_step"].get("predicted_s") and entries["sample_next_step"].get(
        "predicted_s"):
      entries["sample"]["predicted_call_s"] = (
          entries["sample_first_step"]["predicted_s"]
          + (config.max_length - 1) * entries["sample_next_step"]["predicted_s"])
    entries["sample"]["chat"] = {**chat, "num_samples": config.num_samples,
                                 "max_length": config.max_length}
  return report


def _forward_loss(model, params, batch):
  """The summed token NLL of a batch: the forward pass whose matmuls are the model's FLOPs."""
  logits = model.apply({"params": params}, **model_inputs(batch))
  return loss_fn(logits, batch["decoder_target_tokens"], batch.get("decoder_loss_weights"))[0]


def _entry(cost: hlo_analysis.ProgramCost, slice_: slices.Slice,
           model_flops: Optional[float]) -> dict:
  total = cost.total_bytes
  entry = {"compile_s": cost.compile_s,
           "memory": {"arguments": cost.argument_bytes, "outputs": cost.output_bytes,
                      "aliased": cost.alias_bytes, "temps": cost.temp_bytes,
                      "code": cost.code_bytes, "total": total,
                      "headroom": slice_.hbm_bytes - total},
           "flops_xla": cost.flops, "bytes_accessed": cost.bytes_accessed,
           "predicted_s": cost.optimal_seconds, "collectives": cost.collectives,
           "cycle_profile": cost.profile,
           "largest": [{"bytes": size, "what": what} for size, what in cost.largest]}
  if model_flops is not None:
    entry["flops_model"] = model_flops
    if cost.optimal_seconds:
      entry["mfu"] = model_flops / cost.optimal_seconds / slice_.peak_flops
  return entry


# ----------------------------------------------------------------------------------------------
# The report as text.


def _gib(n: float) -> str:
  return f"{n / 2 ** 30:.2f} GiB"


def format_report(report: dict, train_steps: Optional[int] = None) -> str:
  """The report as the table the command prints."""
  mesh = report["mesh"]
  lines = [f"{report['accelerator_type']}: {report['devices']} devices on {report['hosts']} "
           f"host(s), {_gib(report['hbm_bytes'])} HBM and "
           f"{report['peak_flops'] / 1e12:.1f} bf16 TFLOP/s per device; "
           f"{report['parameters'] / 1e6:,.1f}M parameters",
           f"train state per device on the training mesh {mesh['data']} x {mesh['model']}: "
           f"parameters {_gib(report['param_bytes'])}, optimizer state "
           f"{_gib(report['optimizer_bytes'])}, gradients {_gib(report['param_bytes'])} (inside "
           f"the train step's temps); all figures are the compiler's predictions", "",
           f"{'program':<18}{'mesh':>8}{'compile':>8}{'args':>8}{'temps':>8}{'total':>8}"
           f"{'headroom':>10}{'XLA TFLOP':>11}{'model TFLOP':>12}{'predicted':>11}{'MFU':>7}"]
  for name, entry in report["programs"].items():
    memory = entry["memory"]
    model = entry.get("flops_model")
    seconds = entry.get("predicted_s")
    mfu = f"{entry['mfu']:.1%}" if "mfu" in entry else "-"
    program_mesh = f"{entry['mesh']['data']}x{entry['mesh']['model']}"
    lines.append(
        f"{name:<18}{program_mesh:>8}{entry['compile_s']:>7.0f}s"
        f"{_gib(memory['arguments'])[:-4]:>8}"
        f"{_gib(memory['temps'])[:-4]:>8}{_gib(memory['total'])[:-4]:>8}"
        f"{_gib(memory['headroom'])[:-4]:>10}{entry['flops_xla'] / 1e12:>11.3f}"
        f"{(f'{model / 1e12:.3f}' if model else '-'):>12}"
        f"{(f'{seconds * 1e3:.2f} ms' if seconds else '-'):>11}"
        f"{mfu:>7}")
  lines.append("(memory in GiB per device; headroom of eval_step counts the optimizer state that "
               "stays resident)")
  train = report["programs"].get("train_step")
  if train and train.get("predicted_s"):
    lines.append(f"train step: {train['target_tokens_per_s']:,.0f} target tokens/s; "
                 f"{train['days_for_train_steps']:.2f} days for TRAIN_STEPS="
                 f"{train_steps if train_steps is not None else '?'}")
  sample = report["programs"].get("sample")
  if sample and sample.get("predicted_call_s"):
    chat = sample["chat"]
    lines.append(f"sample-and-rank ({chat['batch_size']} contexts x {chat['num_samples']} "
                 f"samples, {chat['max_length']} tokens): "
                 f"{sample['predicted_call_s']:.3f} s per call at full length")
  for name, entry in report["programs"].items():
    lines.append(f"\n{name}:")
    for kind, c in sorted(entry["collectives"].items()):
      over = ", ".join(f"{n} over {axis}" for axis, n in sorted(c["over"].items()))
      lines.append(f"  {kind:<20}{c['count']:>5} ops {c['bytes'] / 2 ** 20:>10.1f} MiB  ({over})")
    if entry["cycle_profile"]:
      lines.append("  estimated cycles: " + ", ".join(
          f"{part} {share:.0%}" for part, share in list(entry["cycle_profile"].items())[:8]))
    for item in entry["largest"][:4]:
      lines.append(f"  {item['bytes'] / 2 ** 20:>9.1f} MiB  {item['what']}")
  return "\n".join(lines)


if __name__ == "__main__":  # python -m meena_jax compile: an alias of the edge.
  from meena_jax import commands  # pylint: disable=import-outside-toplevel
  commands.main(["compile", *sys.argv[1:]])
