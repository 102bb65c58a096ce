"""The least time a decoding step can take here: its weight matmuls alone (``peer-bench/v1``).

  python bench/decode_floor.py --label small --d-model 512 --layers-enc 1 --layers-dec 6 \
      --heads 8 --d-ff 2048 --jsonl results.jsonl

Every incremental decoding step multiplies the N = 20 candidates' rows by each decoder weight
matrix once and by the tied embedding for the logits; nothing else in the step grows with the
parameter count. This script takes those matrices' shapes from the model itself (every decoder
kernel except the encoder attentions' key/value projections, which run once per context) and
times one jitted chain of ``[N, in] @ [in, out]`` products over them, each fed by the previous
product's output, as a step's layers are, compiled with the sampler's own options. It does no attention, normalisation, conv or sampling,
so ``resp_len`` times its median is a floor under any sample-and-rank on these shapes and this
machine at fp32, and ``peer_s / floor_s`` bounds the speed-up over a peer that took ``peer_s``.

``--block-type t5`` times the matrices of the peer's T5 decoder (self-attention Q/K/V/O,
cross-attention Q/O, FFN in/out, tied LM head) on the same chain, so its floor and the peer's
measured time show how close the peer runs to the same limit.
"""
import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position


def t5_step_shapes(args) -> list:
  """The peer's per-step decoder matrices: ``hf_seq2seq.py``'s T5 with inner width d_model."""
  d = args.d_model
  layer = [(d, d)] * 4 + [(d, d)] * 2 + [(d, args.d_ff), (args.d_ff, d)]
  return layer * args.layers_dec + [(d, args.vocab)]


def model_step_shapes(args) -> list:
  """The (in, out) of every matmul one meena_jax decoding step does, in layer order."""
  import jax  # pylint: disable=import-outside-toplevel
  from meena_jax import state  # pylint: disable=import-outside-toplevel
  from meena_jax.model import Seq2Seq  # pylint: disable=import-outside-toplevel

  model = Seq2Seq(common.model_config(args, dropout_rate=0.0))
  params = state.abstract_params(model)
  shapes = []
  for layer in range(args.layers_dec):
    flat = jax.tree_util.tree_flatten_with_path(params[f"decoder_{layer}"])[0]
    for path, leaf in flat:
      names = [getattr(p, "key", "") for p in path]
      if names[-1] != "kernel":
        continue  # Biases, norms and depthwise filters are elementwise work.
      if "encoder_attention" in names[0] and names[1] in ("key", "value"):
        continue  # Projected once per context and cached.
      if names[1] == "out" and leaf.ndim == 3:  # [heads, head_dim, d]
        shapes.append((leaf.shape[0] * leaf.shape[1], leaf.shape[2]))
      elif leaf.ndim == 3:  # [d, heads, head_dim]
        shapes.append((leaf.shape[0], leaf.shape[1] * leaf.shape[2]))
      else:
        shapes.append(tuple(leaf.shape))
  return shapes + [(args.d_model, args.vocab)]


def time_chain(shapes, rows: int, runs: int, seed: int) -> list:
  """Seconds per call of one jitted chain of ``[rows, in] @ [in, out]`` over ``shapes``."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(seed)
  weights = [jnp.asarray(rng.standard_normal(s, dtype=np.float32) * s[0] ** -0.5)
             for s in shapes]
  widest = max(max(s) for s in shapes)

  options = cli.decoding_compiler_options()

  @functools.partial(jax.jit, compiler_options=options)  # As the decoding step is compiled.
  def chain(x, weights):
    total = jnp.zeros((), jnp.float32)
    for w in weights:
      y = x[:, :w.shape[0]] @ w
      total += y[0, 0]
      x = jnp.pad(y, ((0, 0), (0, widest - y.shape[1])))
    return total

  x = jnp.ones((rows, widest), jnp.float32)
  chain(x, weights).block_until_ready()
  seconds = []
  for _ in range(runs):
    start = time.perf_counter()
    chain(x, weights).block_until_ready()
    seconds.append(time.perf_counter() - start)
  return seconds


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_shape_flags(parser)
  parser.set_defaults(block_type="evolved")
  for action in parser._actions:  # pylint: disable=protected-access
    if action.dest == "block_type":
      action.choices = ("evolved", "transformer", "t5")
  parser.add_argument("--num-samples", type=int, default=20)
  parser.add_argument("--runs", type=int, default=30)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--jsonl")
  args = parser.parse_args(argv)

  shapes = t5_step_shapes(args) if args.block_type == "t5" else model_step_shapes(args)
  seconds = time_chain(shapes, args.num_samples, args.runs, args.seed)
  step = common.summary(seconds)
  weights = sum(a * b for a, b in shapes)
  results = {
      "matmuls_per_step": len(shapes), "step_weights": weights,
      "step_gflop": 2 * args.num_samples * weights / 1e9, "floor_step_s": step,
      "floor_sample_s": step["median"] * args.resp_len,
      "gflops_per_s": 2 * args.num_samples * weights / step["median"] / 1e9,
      "peak_rss_mib": common.peak_rss_mib()}
  common.emit("decode_floor", args.label, {
      **common.shape_config(args), "num_samples": args.num_samples, "runs": args.runs,
      "threads": os.cpu_count()}, results, args.jsonl)
  print(f"{args.label} ({args.block_type}): {len(shapes)} matmuls, {weights / 1e6:.1f}M weights "
        f"per step; floor {1e3 * step['median']:.1f} ms/step, "
        f"{results['floor_sample_s']:.2f} s per {args.resp_len} steps, "
        f"{results['gflops_per_s']:.0f} GFLOP/s", file=sys.stderr)


if __name__ == "__main__":
  main()
