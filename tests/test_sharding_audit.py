"""Sharding that cannot be silently off: on a (data 4, model 2) mesh of 8 fake CPU devices, no
array above 1 MiB of the tiny model's train state, packed batch or sampling cache is fully
replicated, and a train step moves nothing between host and devices implicitly.

Runs in a subprocess: the device count is fixed when jax starts, and the other tests use one.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
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
    print("RESULT " + json.dumps({"replicated": found, "loss": float(metrics["loss_sum"] / metrics["token_count"])}))
""")


def test_no_large_array_is_replicated_and_a_step_transfers_nothing_implicitly():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 "
             "--xla_backend_optimization_level=0", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  result = json.loads(line[len("RESULT "):])
  assert result["replicated"] == [], result["replicated"]
  assert result["loss"] > 0


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
