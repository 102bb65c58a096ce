"""Decoding on a (data 4, model 2) mesh of 8 fake CPU devices gives what one device gives.

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
    import dataclasses, json
    import flax.linen as nn
    import jax, jax.numpy as jnp, numpy as np
    from meena_jax import decoding, partitioning
    from meena_jax import state as state_lib
    from meena_jax.model import Seq2Seq
    from tests.conftest import TINY

    assert len(jax.devices()) == 8, jax.devices()
    cfg = dataclasses.replace(TINY, vocab_size=64, dropout_rate=0.0)  # vocab splits over model
    model = Seq2Seq(cfg)
    tokens = jnp.ones((1, 4), jnp.int32)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), tokens, tokens))["params"]
    rng = np.random.default_rng(0)
    contexts = rng.integers(2, 64, (4, 7)).astype(np.int32)
    contexts[1, 3:] = 0
    mesh = partitioning.make_mesh(data=4, model=2)
    sharded = jax.device_put(params, state_lib.param_shardings(model, mesh))
    out = {}
    for name, search, settings, extra in [
        ("sample", decoding.sample, dict(num_samples=3, max_length=6), (jax.random.key(3),)),
        ("beam", decoding.beam_search, dict(beam_size=2, max_length=6), ())]:
      one = decoding.compile_search(search, model, **settings)(params, contexts, *extra)
      many = decoding.compile_search(search, model, mesh, **settings)(sharded, contexts, *extra)
      out[name] = {
          "tokens_equal": bool(np.array_equal(one.tokens, many.tokens)),
          "score_diff": float(np.max(np.abs(np.asarray(one.scores) - np.asarray(many.scores)))),
          "tokens_spec": str(many.tokens.sharding.spec),
          "distinct_candidates": len({tuple(r) for r in np.asarray(one.tokens).reshape(
              -1, 6).tolist()})}
    print("RESULT " + json.dumps(out))
""")


def test_eight_devices_decode_like_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 "
             "--xla_backend_optimization_level=0", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  result = json.loads(line[len("RESULT "):])
  for name in ("sample", "beam"):
    assert result[name]["tokens_equal"], result
    assert result[name]["score_diff"] < 1e-4, result
    assert result[name]["tokens_spec"] == "P('data',)", result
  assert result["sample"]["distinct_candidates"] > 4  # Really sampled, not a constant output.
