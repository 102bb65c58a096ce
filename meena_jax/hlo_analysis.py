"""What a compiled program costs, read off the compiler: memory per device, XLA's FLOP count and
step-time estimate, collectives by kind and mesh axis, and where the estimated cycles go.

Everything here reads a ``jax.stages.Compiled`` (its ``memory_analysis``, ``cost_analysis``
and optimised HLO text), so it works the same for a CPU program and for a TPU program compiled
on a machine without a TPU (``slices.topology_devices``). The matmul FLOPs of the model itself
come from its jaxpr (``matmul_flops``), independent of the compiler, for MFU.
"""
import dataclasses
import math
import re
from typing import Optional

import jax
import numpy as np

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
                "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8,
                "c128": 16}
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%?(?P<name>[\w.\-]+) = (?P<shape>.+?) (?P<op>[a-z][\w\-]*)\((?P<rest>.*)$")
_ARRAY = re.compile(r"\b(pred|bf16|[sufc]\d+)\[([\d,]*)\]")

# Parts of the model, by the Flax module names in an instruction's op_name (first match wins).
PARTS = (("attention", ("attention",)), ("convolutions", ("conv_",)),
         ("feed-forward", ("ffn_", "glu_")), ("embedding and logits", ("embedding",)),
         ("layer norms", ("norm",)), ("loss", ("cross_entropy", "log_softmax", "loss_fn")))


@dataclasses.dataclass
class ProgramCost:
  """One compiled program, per device. Bytes are what XLA reserves for that program."""
  name: str
  compile_s: float
  argument_bytes: int
  output_bytes: int
  alias_bytes: int        # Outputs written into donated arguments (not counted twice).
  temp_bytes: int         # Intermediates: activations, gradients, workspace.
  code_bytes: int
  flops: float            # XLA's count for one device.
  bytes_accessed: float
  optimal_seconds: Optional[float]  # The TPU compiler's own estimate of one execution.
  collectives: dict       # kind -> {"count", "bytes", "over": {axis: count}}
  profile: dict           # part of the model -> share of the estimated cycles
  largest: list           # [(bytes, what)] the largest buffers of the program

  @property
  def total_bytes(self) -> int:
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)


def analyze(name: str, compiled, compile_s: float, mesh, args=(),
            buffer_assignment: str = "") -> ProgramCost:
  """The ``ProgramCost`` of ``compiled`` (lowered for ``mesh`` with arguments ``args``);
  ``buffer_assignment`` is the dumped text ``largest_buffers`` reads (empty: no list)."""
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis() or {}
  if isinstance(cost, list):  # Older jax: one dict per device program.
    cost = cost[0] if cost else {}
  text = compiled.as_text()
  arg_names = [jax.tree_util.keystr(path) for path, _ in
               jax.tree_util.tree_leaves_with_path(args)]
  return ProgramCost(
      name=name, compile_s=compile_s, argument_bytes=int(memory.argument_size_in_bytes),
      output_bytes=int(memory.output_size_in_bytes), alias_bytes=int(memory.alias_size_in_bytes),
      temp_bytes=int(memory.temp_size_in_bytes),
      code_bytes=int(memory.generated_code_size_in_bytes), flops=float(cost.get("flops", 0.0)),
      bytes_accessed=float(cost.get("bytes accessed", 0.0)),
      optimal_seconds=predicted_seconds(cost, text),
      collectives=collectives(text, mesh), profile=cycle_profile(text),
      largest=largest_buffers(buffer_assignment, text, arg_names))


def predicted_seconds(cost: dict, hlo_text: str) -> Optional[float]:
  """The compiler's ``optimal_seconds``, or None when it has none.

  libtpu's v4 cost model scores each top-level ``ConcatBitcast`` custom call as -1 s (a v4
  optimizer update with 16 of them reported -15.9996 s; the same program for v3 has none and
  is positive), so those are added back; a value still not positive is no estimate.
  """
  seconds = cost.get("optimal_seconds")
  if seconds is None:
    return None
  seconds = float(seconds)
  if seconds < 0:
    seconds += len(re.findall(r'custom_call_target="ConcatBitcast"', hlo_text))
  return seconds if seconds > 0 else None


def shape_bytes(shape: str) -> int:
  """Bytes of an HLO shape (``bf16[8,128]{1,0}`` or a tuple of them)."""
  return sum(_DTYPE_BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)
             for dtype, dims in _ARRAY.findall(shape))


def _instructions(text: str):
  for line in text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      yield match


def collectives(text: str, mesh) -> dict:
  """Collectives in an optimised HLO module: per kind, the count, the bytes of their results
  on one device, and over which mesh axis each runs (``model``, ``data``, ``all`` devices, or
  ``other`` subsets). Async pairs count once, at their ``-start``."""
  found = {}
  for match in _instructions(text):
    op = match["op"]
    kind = op[:-len("-start")] if op.endswith("-start") else op
    if kind not in COLLECTIVES:
      continue
    shape = match["shape"]
    if op.endswith("-start") and kind in ("all-gather", "collective-permute"):
      parts = _top_level_parts(shape)  # (operand, result[, contexts]): the result is second.
      shape = parts[1] if len(parts) > 1 else shape
    entry = found.setdefault(kind, {"count": 0, "bytes": 0, "over": {}})
    entry["count"] += 1
    entry["bytes"] += shape_bytes(shape)
    axis = _axis_of(match["rest"], mesh)
    entry["over"][axis] = entry["over"].get(axis, 0) + 1
  return found


def _top_level_parts(shape: str) -> list:
  shape = shape.strip()
  if not shape.startswith("("):
    return [shape]
  parts, depth, start = [], 0, 1
  for i, char in enumerate(shape):
    depth += char in "([{"
    depth -= char in ")]}"
    if char == "," and depth == 1:
      parts.append(shape[start:i])
      start = i + 1
  parts.append(shape[start:-1])
  return [p.strip() for p in parts]


def _iota(spec: str) -> np.ndarray:
  """``[4,8]T(1,0)`` or ``[32]``: XLA's iota device list, reshaped and transposed."""
  match = re.fullmatch(r"\[([\d,]+)\](?:T\(([\d,]+)\))?", spec)
  dims = [int(d) for d in match[1].split(",")]
  array = np.arange(math.prod(dims)).reshape(dims)
  if match[2]:
    array = array.transpose([int(p) for p in match[2].split(",")])
  return array.reshape(-1)


def replica_groups(rest: str) -> Optional[list]:
  """The device groups of a collective's attributes, in any of XLA's three spellings:
  explicit ``{{0,1},{2,3}}``, iota ``[2,2]<=[4]``, or ``mesh['axis_0'=2,...] {'axis_0'}``."""
  explicit = re.search(r"replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}", rest)
  if explicit:
    return [[int(x) for x in g.split(",") if x] for g in re.findall(r"\{([\d,]*)\}",
                                                                     explicit[1])]
  iota = re.search(r"replica_groups=\[(\d+),(\d+)\]<=(\[[\d,]+\](?:T\([\d,]+\))?)", rest)
  if iota:
    return _iota(iota[3]).reshape(int(iota[1]), int(iota[2])).tolist()
  mesh = re.search(r"replica_groups=mesh\[([^\]]*)\](?:, device_ids=\(?(\[[\d,]+\]"
                   r"(?:T\([\d,]+\))?)\)?)? \{([^}]*)\}", rest)
  if mesh:
    axes = re.findall(r"'(\w+)'=(\d+)", mesh[1])
    names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
    devices = _iota(mesh[2]) if mesh[2] else np.arange(math.prod(sizes))
    devices = devices.reshape(sizes)
    reduced = [names.index(a) for a in re.findall(r"'(\w+)'", mesh[3])]
    kept = [i for i in range(len(sizes)) if i not in reduced]
    size = math.prod(sizes[i] for i in reduced)
    return devices.transpose(kept + reduced).reshape(-1, size).tolist()
  return None


def _axis_of(rest: str, mesh) -> str:
  """Which axis of the ``(data, model)`` mesh a collective runs over: the one axis along which
  its groups (or a permute's pairs) vary, ``all`` for groups spanning every device, ``other``
  for anything else. Partition ids number the mesh's devices in row-major order."""
  pairs = re.search(r"source_target_pairs=\{(.*?)\}\}", rest)
  groups = ([[int(a), int(b)] for a, b in re.findall(r"\{(\d+),(\d+)\}", pairs[0])]
            if pairs else replica_groups(rest))
  if not groups:
    return "all"
  shape, names = tuple(mesh.devices.shape), list(mesh.axis_names)
  varying = set()
  for group in groups:
    coords = np.unravel_index(np.array(group), shape)
    varying |= {names[i] for i in range(len(shape)) if len(set(coords[i].tolist())) > 1}
  if len(varying) == 1:
    return varying.pop()
  if varying == set(names) and all(len(g) == math.prod(shape) for g in groups):
    return "all"
  return "other"


def cycle_profile(text: str) -> dict:
  """The share of the compiler's per-instruction cycle estimates (``estimated_cycles`` in a TPU
  program's backend config) by part of the model, forward and backward, and the optimizer.
  Collectives carry no estimate and are reported apart; empty for programs without one."""
  totals = {}
  for line in text.splitlines():
    cycles = re.search(r'"estimated_cycles":"(\d+)"', line)
    if not cycles:
      continue
    op_name = (re.search(r'op_name="([^"]*)"', line) or [None, ""])[1]
    totals[_part(op_name)] = totals.get(_part(op_name), 0) + int(cycles[1])
  total = sum(totals.values())
  return {k: v / total for k, v in sorted(totals.items(), key=lambda kv: -kv[1])} if total else {}


def _part(op_name: str) -> str:
  if "Seq2Seq" not in op_name and "RewardModel" not in op_name:
    return "optimizer and other"
  phase = "backward" if "transpose(" in op_name else "forward"
  module = op_name.split("Seq2Seq", 1)[-1]
  for part, keys in PARTS:
    if any(key in module for key in keys):
      return f"{part} ({phase})"
  return f"other model ops ({phase})"


def largest_buffers(buffer_assignment: str, hlo_text: str, arg_names=(), count: int = 6) -> list:
  """The ``count`` largest buffers of one device from XLA's buffer assignment (the
  ``*after_optimizations-buffer-assignment.txt`` a compile dumps): ``[(bytes, what)]``, an
  argument named by its tree path, anything else by its instruction's source op."""
  op_names = {}
  for match in _instructions(hlo_text):
    op_name = re.search(r'op_name="([^"]*)"', match["rest"])
    if op_name:
      op_names[match["name"]] = op_name[1]
  found, seen, parameter = [], set(), None
  for line in buffer_assignment.splitlines():
    allocation = re.match(r"allocation (\d+): size (\d+)(.*)", line)
    if allocation:
      number = re.search(r"parameter (\d+)", allocation[3])
      parameter = int(number[1]) if number else None
      index = allocation[1]
      continue
    value = re.match(r"\s*value: <\d+ ([\w.\-]+)(?:\{[\d,]*\})? @\d+> "
                     r"\(size=(\d+),offset=(\d+)\): (.*)", line)
    if not value or (index, value[3], value[2]) in seen:
      continue
    seen.add((index, value[3], value[2]))
    shape = value[4].split("{")[0]
    if parameter is not None and parameter < len(arg_names):
      what = f"argument {arg_names[parameter]} {shape}"
    else:
      source = op_names.get(value[1], "").split("/", 1)[-1]
      what = f"{value[1]} {shape}" + (f" ({source[:100]})" if source else "")
    found.append((int(value[2]), what))
  return sorted(found, key=lambda item: -item[0])[:count]


def matmul_flops(fn, *args) -> float:
  """Matmul FLOPs of ``fn`` on ``args`` (``2 * output elements * contracted size`` of every
  ``dot_general`` in its jaxpr, loops multiplied by their trip counts): the model's own work,
  whatever the compiler recomputes or fuses."""
  return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (contracting, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contracting)
    times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          total += times * _jaxpr_flops(inner)
  return total
