"""The train step on one device: Meena's schedule, exact microbatch accumulation, shardings
derived from the logical axis rules (multi-device equivalence is tested with the trainer)."""
import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from meena_jax import partitioning
from meena_jax import state as state_lib
from meena_jax import train_step
from meena_jax.model import Seq2Seq
from tests.conftest import TINY, random_tokens, shift_right

CFG = dataclasses.replace(TINY, dropout_rate=0.0)


def test_meena_schedule_is_constant_then_inverse_square_root():
  schedule = train_step.meena_schedule(0.01, 10_000)
  for step, want in [(0, 0.01), (1, 0.01), (10_000, 0.01), (40_000, 0.005), (90_000, 0.01 / 3)]:
    assert float(schedule(np.int32(step))) == pytest.approx(want, rel=1e-6)


def make_batch(seed=0, rows=4):
  rng = np.random.default_rng(seed)
  targets = np.array(random_tokens(rng, CFG, (rows, 6)))
  targets[1, 4:] = 0  # Rows with different token counts: accumulation must weight by tokens.
  return {"encoder_input_tokens": np.asarray(random_tokens(rng, CFG, (rows, 7))),
          "decoder_input_tokens": np.asarray(shift_right(targets)),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets > 0).astype(np.float32)}


@pytest.fixture(scope="module")
def setup():
  model, optimizer = Seq2Seq(CFG), train_step.make_optimizer()
  mesh = partitioning.make_mesh(devices=jax.devices()[:1])
  abstract = state_lib.abstract_state(state_lib.abstract_params(model, mesh), optimizer)
  state = state_lib.create_state(model, optimizer, jax.random.key(0), abstract)
  shardings = state_lib.shardings(abstract)
  return model, optimizer, mesh, state, shardings


def test_microbatch_accumulation_equals_one_big_batch(setup):
  model, optimizer, mesh, state, shardings = setup
  batch, key = make_batch(1), jax.random.key(3)
  results = []
  for micro in (1, 2):
    step = jax.jit(lambda s, b, k, m=micro: train_step.train_step(
        s, b, k, model=model, optimizer=optimizer, num_microbatches=m))
    results.append(step(state, batch, key))
  (one, m1), (two, m2) = results
  np.testing.assert_allclose(m1["loss_sum"], m2["loss_sum"], rtol=1e-6)
  assert float(m1["token_count"]) == float(m2["token_count"]) == 22
  np.testing.assert_allclose(m1["grad_norm"], m2["grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(two.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert int(one.step) == int(two.step) == 1


def test_a_step_lowers_the_loss_on_a_repeated_batch(setup):
  model, optimizer, mesh, state, shardings = setup
  step = train_step.jit_train_step(model, optimizer, shardings,
                                   partitioning.batch_sharding(mesh))
  state = jax.tree_util.tree_map(lambda x: x.copy(), state)  # The step donates its input.
  batch, losses = make_batch(2), []
  for _ in range(4):
    state, metrics = step(state, batch, jax.random.key(0))
    losses.append(float(metrics["loss_sum"] / metrics["token_count"]))
  assert losses[-1] < losses[0]
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_parameters_and_adafactor_slots_are_sharded_by_the_rules(setup):
  *_, shardings = setup
  ffn_in = shardings.params["decoder_0"]["ffn_in"]
  assert ffn_in["kernel"].spec == P(None, "model") and ffn_in["bias"].spec == P("model")
  assert shardings.params["embedding"]["embedding"].spec == P("model", None)
  query = shardings.params["decoder_0"]["self_attention"]["query"]["kernel"]
  assert query.spec == P(None, "model", None)
  factored = [s.spec for s in jax.tree_util.tree_leaves(shardings.opt_state)]
  assert P("model") in factored  # The (mlp,)-shaped Adafactor row/column statistics.


def test_unknown_logical_axis_is_named():
  mesh = partitioning.make_mesh(devices=jax.devices()[:1])
  with pytest.raises(ValueError, match="decoder_0/x: logical axis 'widht' has no rule"):
    partitioning.logical_to_sharding(("embed", "widht"), mesh, where="decoder_0/x")


@pytest.mark.parametrize("data, model, message", [
    (3, 1, "mesh data=3 model=1: 3 x 1 = 3 devices, not 1"),
    (-1, -1, "mesh data=-1 model=-1: sizes must be positive, and at most one of them -1"),
])
def test_bad_mesh_shapes_are_explained(data, model, message):
  with pytest.raises(ValueError, match=message):
    partitioning.make_mesh(data, model, devices=jax.devices()[:1])


def test_rematerialisation_changes_memory_not_results():
  """``ModelConfig.remat`` recomputes activations in the backward pass; losses and gradients
  (dropout included: the same keys) equal the plain pass's."""
  batch, key = make_batch(3), jax.random.key(5)
  cfg = dataclasses.replace(TINY, dropout_rate=0.1)
  params = state_lib.create_state(Seq2Seq(cfg), train_step.make_optimizer(), jax.random.key(0),
                                  state_lib.abstract_state(
                                      state_lib.abstract_params(Seq2Seq(cfg), _one_device()),
                                      train_step.make_optimizer())).params
  results = {}
  for remat in ("none", "full", "matmuls"):
    model = Seq2Seq(dataclasses.replace(cfg, remat=remat))
    fn = lambda p, m=model: train_step._loss_and_grads(m, p, batch, key)
    assert ("remat" in str(jax.make_jaxpr(fn)(params))) == (remat != "none")
    results[remat] = jax.jit(fn)(params)
  for remat in ("full", "matmuls"):
    np.testing.assert_allclose(results[remat][0], results["none"][0], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(results[remat][2]),
                    jax.tree_util.tree_leaves(results["none"][2])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_an_unknown_remat_policy_names_the_binding():
  with pytest.raises(ValueError, match=r"ModelConfig.remat='some': choose one of"):
    dataclasses.replace(TINY, remat="some")


def _one_device():
  return partitioning.make_mesh(devices=jax.devices()[:1])
