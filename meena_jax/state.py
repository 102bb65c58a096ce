"""The train state and where it lives: shapes and shardings from the model and optimizer alone,
then the state born sharded.

``abstract_state`` is the one answer to "what does the state look like on this mesh": the
trainer restores into it and initialises with its shardings, checkpoints check a run against its
parameters, the summary and the pod launcher count its bytes, and ``meena_jax.compile`` lowers
the real programs on it for a TPU slice. Nothing is allocated until ``create_state``.
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meena_jax import partitioning

# Parameter shapes do not depend on the batch: any tokens initialise the same tree.
_INIT_TOKENS = jax.ShapeDtypeStruct((1, 8), jnp.int32)


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data position; dropout keys derive from the
  seed and ``step``, so no rng is stored."""
  step: jax.Array
  params: Any
  opt_state: Any


def init_params(module: nn.Module, key):
  """Boxed (logically named) parameters of ``module``: a ``Seq2Seq`` or anything initialised
  like one (``module.init(key, encoder_tokens, decoder_tokens)``, e.g. the reward model)."""
  tokens = jnp.ones(_INIT_TOKENS.shape, _INIT_TOKENS.dtype)
  return module.init(key, tokens, tokens)["params"]


def boxed_params(module: nn.Module):
  """The parameters as ``ShapeDtypeStruct``s inside their ``nn.LogicallyPartitioned`` boxes:
  shapes and logical axis names, nothing allocated."""
  return jax.eval_shape(functools.partial(init_params, module),
                        jax.eval_shape(jax.random.key, 0))


def abstract_params(module: nn.Module, mesh: Optional[jax.sharding.Mesh] = None):
  """The parameters as ``ShapeDtypeStruct``s, each with its ``NamedSharding`` on ``mesh`` (by
  the logical-axis rules; an uneven split raises naming the parameter), or unsharded."""
  boxed = boxed_params(module)
  # Shapes only: no sharding constraint (nn.unbox adds one when axis rules are in scope).
  shapes = jax.tree_util.tree_map(
      lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.LogicallyPartitioned) else x,
      boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  if mesh is None:
    return shapes
  return jax.tree_util.tree_map(
      lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes, partitioning.param_shardings(boxed, mesh))


def abstract_state(params, optimizer: optax.GradientTransformation) -> TrainState:
  """The ``TrainState`` over sharded abstract ``params`` (``abstract_params`` of a model, or a
  dict of several) as ``ShapeDtypeStruct``s with shardings: optimizer slots follow their
  parameter (``slot_sharding``), counters are replicated."""
  mesh = jax.tree_util.tree_leaves(params)[0].sharding.mesh
  replicated = partitioning.replicated(mesh)
  by_path = {_keys(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}

  def place(path, slot):
    sharding = slot_sharding(_keys(path), slot.shape, by_path, replicated)
    return jax.ShapeDtypeStruct(slot.shape, slot.dtype, sharding=sharding)

  opt_state = jax.tree_util.tree_map_with_path(place, jax.eval_shape(optimizer.init, params))
  return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
                    params=params, opt_state=opt_state)


def slot_sharding(path: tuple, shape: tuple, params_by_path: dict, replicated):
  """The sharding of one optimizer slot at ``path``, from the parameter whose path ends it.

  A slot of the parameter's shape (Adam's moments, Adafactor's unfactored ``v``) takes the
  parameter's spec. Adafactor's factored ``v_row`` and ``v_col`` drop a dimension each; which
  one is read off optax's convention (the two largest dimensions ``d1, d0`` by a stable sort;
  ``v_row`` drops ``d0``, ``v_col`` drops ``d1``), not guessed from the shape, so the two
  slots of a square kernel get different specs. Anything else (counts, placeholders) is
  replicated.
  """
  for start in range(len(path)):
    param = params_by_path.get(path[start:])
    if param is None:
      continue
    spec = tuple(param.sharding.spec) + (None,) * (len(param.shape) - len(param.sharding.spec))
    if tuple(shape) == tuple(param.shape):
      return jax.sharding.NamedSharding(replicated.mesh, jax.sharding.PartitionSpec(*spec))
    field = path[start - 1] if start else ""
    if field in ("v_row", "v_col") and len(param.shape) >= 2:
      d1, d0 = (int(d) for d in np.argsort(param.shape, kind="stable")[-2:])
      dropped = d0 if field == "v_row" else d1
      kept = tuple(s for i, s in enumerate(param.shape) if i != dropped)
      if tuple(shape) == kept:
        return jax.sharding.NamedSharding(replicated.mesh, jax.sharding.PartitionSpec(
            *(spec[:dropped] + spec[dropped + 1:])))
    return replicated
  return replicated


def _keys(path) -> tuple:
  """A tree path as plain strings (dict keys, dataclass fields and list indices alike)."""
  out = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        out.append(str(getattr(entry, attribute)))
        break
    else:
      out.append(str(entry))
  return tuple(out)


def shardings(tree):
  """The ``sharding`` of every leaf of an abstract tree (what ``jax.jit`` takes)."""
  return jax.tree_util.tree_map(lambda leaf: leaf.sharding, tree)


def param_shardings(module: nn.Module, mesh: jax.sharding.Mesh):
  """The ``NamedSharding`` of every parameter of ``module`` on ``mesh`` (what ``jax.jit`` and
  ``jax.device_put`` take)."""
  return shardings(abstract_params(module, mesh))


def create_state(module: nn.Module, optimizer: optax.GradientTransformation, rng,
                 abstract: TrainState) -> TrainState:
  """A fresh state born with ``abstract``'s shardings: the init is jitted with them as output
  shardings, so no full-size array ever sits on one device."""
  def init(key):
    params = nn.unbox(init_params(module, key))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params))
  return jax.jit(init, out_shardings=shardings(abstract))(rng)


def state_from_params(params, optimizer: optax.GradientTransformation,
                      abstract: TrainState) -> TrainState:
  """A step-0 state over given ``params`` (a checkpoint's, a reward model's), fresh optimizer
  slots, placed by ``abstract``'s shardings."""
  init = lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p,  # pylint: disable=unnecessary-lambda-assignment
                              opt_state=optimizer.init(p))
  return jax.jit(init, out_shardings=shardings(abstract))(params)


def bytes_per_device(tree) -> int:
  """Bytes one device holds of an abstract tree: each leaf's shard shape on its sharding."""
  return sum(int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
             for leaf in jax.tree_util.tree_leaves(tree))
