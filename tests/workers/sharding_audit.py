"""Worker for tests/test_sharding_audit.py (8 fake devices): prints, as JSON, every array above
1 MiB of the tiny model's train state, packed batch and sampling cache that is fully replicated
on a (data 4, model 2) mesh, and the loss of a train step run under a transfer guard."""
import json
import sys

import jax
import numpy as np

from meena_jax import decoding, partitioning, state as state_lib, train
from meena_jax.config import ModelConfig

assert len(jax.devices()) == 8, jax.devices()
# gin/models/et_tiny.gin's shapes.
cfg = ModelConfig(vocab_size=8000, d_model=256, num_heads=4, d_ff=1024,
                  num_encoder_layers=1, num_decoder_layers=2)
mesh = partitioning.make_mesh(data=4, model=2)
MIB = 2 ** 20


def replicated_above_a_mib(tree, kind):
  found = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    sharding = getattr(leaf, "sharding", None)
    size = np.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
    if size > MIB and (sharding is None or sharding.is_fully_replicated):
      found.append(f"{kind}{jax.tree_util.keystr(path)} {leaf.shape}")
  return found


with partitioning.activate(mesh):
  run = train.programs(model_config=cfg, mesh=mesh, batch_size=16, input_length=128,
                       target_length=128, train_steps=10)
  state = state_lib.create_state(run.model, run.optimizer, jax.random.key(0), run.state)
  rng = np.random.default_rng(0)
  batch = {k: jax.device_put(rng.integers(1, 50, v.shape).astype(v.dtype), v.sharding)
           for k, v in run.train_batch.items()}
  key = jax.device_put(jax.random.key(1), run.key.sharding)
  found = replicated_above_a_mib(state, "state") + replicated_above_a_mib(batch, "batch")
  with jax.transfer_guard("disallow"):
    state, metrics = run.train_step(state, batch, key)
    jax.block_until_ready(state)
  first, _ = decoding.sampler_steps(run.model, decoding.DecodingConfig(max_length=32), mesh)
  contexts = jax.device_put(np.ones((8, 128), np.int32), partitioning.batch_sharding(mesh))
  sampling = first.lower(state.params, contexts, key).compile().output_shardings
  shapes = jax.eval_shape(first, state.params, contexts, key)
  cache = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, sampling)
  found += replicated_above_a_mib(cache.cache, "cache")
  # Each cache array's layout, by its name: (mesh axis or None) per dimension.
  layouts = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(cache.cache):
    spec = tuple(leaf.sharding.spec) + (None,) * (leaf.ndim - len(leaf.sharding.spec))
    layouts.setdefault(str(path[-1].key), set()).add(spec)
json.dump({"replicated": found, "cache_layouts": {k: sorted(v) for k, v in layouts.items()},
           "loss": float(metrics["loss_sum"] / metrics["token_count"])}, sys.stdout)
