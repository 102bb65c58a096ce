"""The one abstract state: shapes and shardings of parameters and optimizer slots from the
model and optimizer alone; factored Adafactor slots follow their parameter by path."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec as P

from meena_jax import state, train_step
from meena_jax.model import Seq2Seq
from tests.conftest import TINY

MESH = AbstractMesh((2, 4), ("data", "model"))


def test_a_square_kernels_two_factored_slots_take_different_axes():
  params = {"w": jax.ShapeDtypeStruct((256, 256), jnp.float32,
                                      sharding=NamedSharding(MESH, P("data", "model")))}
  abstract = state.abstract_state(params, optax.adafactor(1e-2))
  slots = {jax.tree_util.keystr(p): leaf for p, leaf in
           jax.tree_util.tree_leaves_with_path(abstract.opt_state)}
  v_row = next(leaf for path, leaf in slots.items() if "v_row" in path and "'w'" in path)
  v_col = next(leaf for path, leaf in slots.items() if "v_col" in path and "'w'" in path)
  assert (v_row.shape, tuple(v_row.sharding.spec)) == ((256,), ("data",))
  assert (v_col.shape, tuple(v_col.sharding.spec)) == ((256,), ("model",))
  # The claim checked against optax itself: with squared gradients that vary along axis 0
  # only, v_row varies and v_col does not, so v_row is indexed by axis 0 (its "data" axis).
  optimizer = optax.adafactor(1e-2)
  w = jnp.ones((256, 256))
  grads = jnp.broadcast_to(jnp.arange(256.0)[:, None] + 1.0, (256, 256))
  _, opt_state = optimizer.update({"w": grads}, optimizer.init({"w": w}), {"w": w})
  found = {jax.tree_util.keystr(p): np.asarray(x) for p, x in
           jax.tree_util.tree_leaves_with_path(opt_state) if np.ndim(x) == 1 and x.size == 256}
  row = next(x for path, x in found.items() if "v_row" in path)
  col = next(x for path, x in found.items() if "v_col" in path)
  assert np.ptp(row) > 0 and np.ptp(col) == 0


def test_every_leaf_of_the_state_is_placed_and_counted_per_device():
  model = Seq2Seq(dataclasses.replace(TINY, vocab_size=64))  # Splits 4 ways.
  params = state.abstract_params(model, MESH)
  abstract = state.abstract_state(params, train_step.make_optimizer())
  for leaf in jax.tree_util.tree_leaves(abstract):
    assert isinstance(leaf.sharding, NamedSharding)
  total = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
  per_device = state.bytes_per_device(params)
  assert total / 4 < per_device < total  # Some kernels split over `model`, the rest whole.
  assert jax.tree_util.tree_structure(state.abstract_params(model)) == (
      jax.tree_util.tree_structure(params))
