"""Sharding that cannot be silently off: on a (data 4, model 2) mesh of 8 fake CPU devices, no
array above 1 MiB of the tiny model's train state, packed batch or sampling cache is fully
replicated, the cache follows the rule table, and a train step moves nothing between host and
devices implicitly.

Runs in a subprocess: the device count is fixed when jax starts, and the other tests use one.
"""
import json

from tests.test_multidevice import run_worker

def test_no_large_array_is_replicated_and_a_step_transfers_nothing_implicitly():
  result = json.loads(run_worker("tests.workers.sharding_audit", 8))
  assert result["replicated"] == [], result["replicated"]
  assert result["loss"] > 0
  # The cache is laid out by the rule table: keys/values by batch (data) and heads (model), the
  # ET conv rows by batch, the hidden ones also by channel (mlp -> model).
  layouts = result["cache_layouts"]
  for name in ("cached_key", "cached_value", "encoder_key", "encoder_value"):
    assert layouts[name] == [["data", "model", None, None]], (name, layouts[name])
  assert layouts["conv_input_rows"] == [["data", None, None]]
  assert layouts["conv_hidden_rows"] == [["data", None, "model"]]


def test_a_constraint_with_only_a_mesh_or_only_rules_in_scope_is_an_error():
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import pytest  # pylint: disable=import-outside-toplevel
  from meena_jax import layers, partitioning  # pylint: disable=import-outside-toplevel
  x = jnp.ones((2, 3, 4))
  mesh = partitioning.make_mesh(1, 1, jax.devices()[:1])
  with nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
    with pytest.raises(ValueError, match=r"\('batch', 'length', 'embed'\) with axis rules but "
                                         r"no mesh in scope; enter partitioning.activate"):
      jax.jit(lambda y: layers.constrain(y))(x)  # pylint: disable=unnecessary-lambda
  with jax.set_mesh(mesh):
    with pytest.raises(ValueError, match="a mesh but no axis rules"):
      jax.jit(lambda y: layers.constrain(y) + 0)(x)
  with partitioning.activate(mesh):
    assert jax.jit(lambda y: layers.constrain(y) * 1)(x).shape == x.shape
  assert layers.constrain(x) is not None  # One device, nothing in scope: inert.
