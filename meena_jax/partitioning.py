"""The device mesh and the logical-axis rules: where every parameter, optimizer slot and batch
lives.

Model code names axes (``layers.py``); this module alone maps names to mesh axes. The train
state is born sharded: its shapes are evaluated, logical names become ``NamedSharding``s, and the
init is jitted with those output shardings, so no full-size array ever sits on one device.
"""
import contextlib
from typing import Optional, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# (logical name, mesh axis or None). Names listed with None are replicated on purpose.
LOGICAL_AXIS_RULES = (
    # Activations.
    ("batch", "data"),
    ("length", None),
    # Weights: the wide dimensions split over `model`, the residual stream replicated.
    ("embed", None),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("vocab", "model"),
    # Convolutions: output channels split like a dense layer's; taps and inputs replicated.
    ("conv_width", None),
    ("conv_in", None),
    ("conv_out", "model"),
)
MESH_AXES = ("data", "model")


@contextlib.contextmanager
def activate(mesh: Mesh):
  """The mesh and the logical-axis rules in scope, entered once around a program's calls:
  activation constraints (``layers.constrain``) apply only inside."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
    yield mesh


def mesh_shape(data: int, model: int, num_devices: int) -> tuple[int, int]:
  """``(data, model)`` sizes over ``num_devices``; one size may be -1 (whatever remains).
  Raises ``ValueError`` saying what does not fit (the pod launcher checks a slice with it)."""
  if min(data, model) == 0 or min(data, model) < -1 or data == model == -1:
    raise ValueError("sizes must be positive, and at most one of them -1")
  if -1 in (data, model):
    known = model if data == -1 else data
    if num_devices % known:
      raise ValueError(f"{num_devices} devices do not divide by {known}")
    return (num_devices // known, model) if data == -1 else (data, num_devices // known)
  if data * model != num_devices:
    raise ValueError(f"{data} x {model} = {data * model} devices, not {num_devices}")
  return data, model


def make_mesh(data: int = -1, model: int = 1,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A ``(data, model)`` mesh over all devices (sizes as ``mesh_shape`` resolves them)."""
  devices = list(devices if devices is not None else jax.devices())
  try:
    shape = mesh_shape(data, model, len(devices))
  except ValueError as error:
    raise ValueError(f"mesh data={data} model={model}: {error}") from None
  return jax.make_mesh(shape, MESH_AXES, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)


def logical_to_sharding(names: Sequence[Optional[str]], mesh: Mesh,
                        rules=LOGICAL_AXIS_RULES, where: str = "") -> NamedSharding:
  """``("embed", "mlp")`` -> ``NamedSharding(mesh, P(None, "model"))``, naming the culprit."""
  table = dict(rules)
  spec = []
  for name in names:
    if name is not None and name not in table:
      raise ValueError(f"{where or 'array'}: logical axis {name!r} has no rule in "
                       f"{sorted(table)}")
    spec.append(table.get(name) if name else None)
  return NamedSharding(mesh, P(*spec))


def param_shardings(boxed_params, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
  """Shardings of a tree of ``nn.LogicallyPartitioned`` leaves (from ``eval_shape`` of init)."""
  def one(path, leaf):
    name = jax.tree_util.keystr(path)
    if not isinstance(leaf, nn.LogicallyPartitioned):
      raise ValueError(f"parameter {name} has no logical axis names")
    sharding = logical_to_sharding(leaf.names, mesh, rules, name)
    check_divisible(name, leaf.value.shape, leaf.names, sharding.spec, mesh)
    return sharding
  return jax.tree_util.tree_map_with_path(
      one, boxed_params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def check_divisible(name: str, shape, logical_names, spec, mesh: Mesh):
  """Raises naming the parameter, its axis and the mesh axis when a split is uneven (XLA would
  otherwise fail later with no parameter named)."""
  for size, logical, axis in zip(shape, logical_names, tuple(spec) + (None,) * len(shape)):
    if axis is not None and size % mesh.shape[axis]:
      raise ValueError(
          f"parameter {name}: axis {logical!r} of size {size} does not divide over mesh axis "
          f"{axis!r} of {mesh.shape[axis]} devices (shape {tuple(shape)}); choose a mesh "
          f"whose {axis!r} size divides it, or a model whose {logical!r} size does")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches split along ``data`` on their leading axis."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
