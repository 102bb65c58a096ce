"""Runs 3 train steps of a small ET on several meshes of this process's devices and prints, as
JSON, each mesh's losses and every parameter/slot whose sharding is not what the rules say.

Started by tests/test_multidevice.py with 8 fake CPU devices; not a test itself.
"""
import dataclasses
import json
import sys

import flax.linen as nn
import jax
import numpy as np

from meena_jax import partitioning, train_step
from meena_jax import state as state_lib
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq

# 8 heads, FFN 64 and vocabulary 64: every `model`-split axis divides over 8 devices.
CFG = ModelConfig(vocab_size=64, d_model=32, num_heads=8, d_ff=64, num_encoder_layers=1,
                  num_decoder_layers=1, dropout_rate=0.1)
MESHES = {"1 device": (1, 1), "data=8": (8, 1), "data=2,model=4": (2, 4), "model=8": (1, 8)}


def batches(steps=3, rows=8, length=16):
  rng = np.random.default_rng(0)
  for _ in range(steps):
    targets = rng.integers(2, CFG.vocab_size, (rows, length)).astype(np.int32)
    targets[:, length - 3:] = 0
    inputs = rng.integers(2, CFG.vocab_size, (rows, length)).astype(np.int32)
    yield {"encoder_input_tokens": inputs,
           "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
           "decoder_target_tokens": targets,
           "decoder_loss_weights": (targets > 0).astype(np.float32)}


def wrong_shardings(state, mesh, model) -> list[str]:
  """Parameters whose placement differs from the rules applied to their logical names, and
  shards whose shape is not the parameter's split by the mesh."""
  rules = dict(partitioning.LOGICAL_AXIS_RULES)
  names = jax.tree_util.tree_leaves(
      state_lib.boxed_params(model), is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  wrong = []
  for (path, array), box in zip(jax.tree_util.tree_leaves_with_path(state.params), names):
    want = tuple(rules[n] for n in box.names)
    got = tuple(array.sharding.spec) + (None,) * (array.ndim - len(array.sharding.spec))
    shard = tuple(s // (mesh.shape[a] if a else 1) for s, a in zip(array.shape, want))
    if got != want or array.addressable_shards[0].data.shape != shard:
      wrong.append(f"{jax.tree_util.keystr(path)}: {got} {array.addressable_shards[0].data.shape}"
                   f" want {want} {shard}")
  return wrong


def run_on(mesh, model, optimizer) -> dict:
  """3 steps on ``mesh``, with the mesh and axis rules in scope as the trainer has them."""
  sharding = partitioning.batch_sharding(mesh)
  with partitioning.activate(mesh):
    abstract = state_lib.abstract_state(state_lib.abstract_params(model, mesh), optimizer)
    state = state_lib.create_state(model, optimizer, jax.random.key(0), abstract)
    step = train_step.jit_train_step(model, optimizer, state_lib.shardings(abstract), sharding)
    losses = []
    for batch in batches():
      state, metrics = step(state, {k: jax.device_put(v, sharding) for k, v in batch.items()},
                            jax.random.key(1))
      losses.append(float(metrics["loss_sum"] / metrics["token_count"]))
  return {"losses": losses, "wrong_shardings": wrong_shardings(state, mesh, model)}


def main():
  model, optimizer = Seq2Seq(CFG), train_step.make_optimizer()
  report = {"devices": jax.device_count()}
  for label, (data, model_size) in MESHES.items():
    mesh = partitioning.make_mesh(data, model_size, jax.devices()[:data * model_size])
    report[label] = run_on(mesh, model, optimizer)
  try:  # 4 heads cannot split over 8 devices: the error must name a parameter.
    bad = dataclasses.replace(CFG, num_heads=4)
    mesh = partitioning.make_mesh(1, 8)
    state_lib.abstract_params(Seq2Seq(bad), mesh)
    report["indivisible_error"] = None
  except ValueError as error:
    report["indivisible_error"] = str(error)
  json.dump(report, sys.stdout)


if __name__ == "__main__":
  main()
