"""Sample-and-rank latency of meena_jax on the peer benchmark's shapes (``peer-bench/v1``).

  python bench/decode.py --label small --d-model 512 --layers-enc 1 --layers-dec 6 \
      --heads 8 --d-ff 2048 --runs 5 --jsonl results.jsonl
  python bench/decode.py --label small ... --no-cache --runs 1     # the reference run

Same work as ``../shared/bench/peers/hf_seq2seq.py sample``: one random context of ctx-len ids
in [2, vocab), N = 20 candidates of exactly resp-len tokens (EOS masked until then) drawn at
T = 0.88, each scored by its T = 1 log-likelihood and the 20 ranked. The scores accumulate inside
the one jitted ``decoding.sample`` call, so ``rank_s`` is 0 and ``generate_s`` is the whole call.
Compilation is timed apart (``compile_s``), then ``--warmup`` untimed calls, then ``--runs``
timed ones with ``block_until_ready``.

``--no-cache`` decodes without the incremental cache: every step re-runs the decoder over the
prefix so far (rounded up to a multiple of 16 tokens, one compiled program per length), with the
context encoded once and the same sampling and scoring, as ``generate(use_cache=False)`` does.
"""
import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position

BUCKET = 16


def no_cache_sample(model, params, context, key, *, num_samples, temperature, length):
  """Sample-and-rank recomputing the decoder over the prefix at every step (the reference)."""
  import jax
  import jax.numpy as jnp
  from meena_jax import decoding
  from meena_jax.model import Seq2Seq

  encoded, segments = jax.jit(functools.partial(decoding.encode, model))(params, context)
  encoded = jnp.repeat(encoded, num_samples, axis=0)
  segments = jnp.repeat(segments, num_samples, axis=0)

  @functools.partial(jax.jit, static_argnames="width")
  def step(params, tokens, scores, t, width):
    inputs = jnp.pad(tokens[:, :width - 1], ((0, 0), (1, 0)))  # Start token, then the prefix.
    logits = model.apply({"params": params}, encoded, segments, inputs,
                         method=Seq2Seq.decode)
    logits = jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False).astype(jnp.float32)
    drawn_from = (logits / temperature).at[:, decoding.EOS_ID].set(-jnp.inf)
    drawn_from = drawn_from.at[:, decoding.PAD_ID].set(-jnp.inf)
    token = jax.random.categorical(jax.random.fold_in(key, t), drawn_from).astype(jnp.int32)
    gained = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
    return tokens.at[:, t].set(token), scores + gained

  tokens = jnp.zeros((num_samples, length), jnp.int32)
  scores = jnp.zeros((num_samples,), jnp.float32)
  for t in range(length):
    width = min(length, (t // BUCKET + 1) * BUCKET)
    tokens, scores = step(params, tokens, scores, t, width=width)
  order = jnp.argsort(-scores)
  return tokens[order], scores[order]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_shape_flags(parser)
  parser.add_argument("--num-samples", type=int, default=20)
  parser.add_argument("--temperature", type=float, default=0.88)
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--no-cache", action="store_true")
  parser.add_argument("--xla-cpu-defaults", action="store_true",
                      help="compile with XLA's default CPU options (YNNPACK fusion on) instead "
                      "of cli.CPU_DECODING_OPTIONS, for comparison")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--jsonl")
  args = parser.parse_args(argv)

  import flax.linen as nn
  import jax
  import numpy as np
  from meena_jax import cli, decoding
  from meena_jax.model import Seq2Seq

  cfg = common.model_config(args, dropout_rate=0.0)
  model = Seq2Seq(cfg)
  tokens = np.ones((1, 4), np.int32)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(args.seed), tokens, tokens))["params"]
  total = sum(x.size for x in jax.tree_util.tree_leaves(params))
  decoder = sum(x.size for name, tree in params.items() if name.startswith("decoder_")
                for x in jax.tree_util.tree_leaves(tree))
  rng = np.random.default_rng(args.seed + 2)
  context = rng.integers(2, args.vocab, (1, args.ctx_len)).astype(np.int32)
  settings = dict(num_samples=args.num_samples, temperature=args.temperature)

  start = time.perf_counter()
  if args.no_cache:
    run = functools.partial(no_cache_sample, model, params, context,
                            length=args.resp_len, **settings)
    jax.block_until_ready(run(jax.random.key(0)))  # Compiles the per-length programs.
  else:
    settings.update(max_length=args.resp_len, min_length=args.resp_len)
    if args.xla_cpu_defaults:  # No mesh, so compile_search's axis rules would change nothing.
      jitted = jax.jit(functools.partial(decoding.sample, model, **settings))
    else:
      jitted = decoding.compile_search(decoding.sample, model,
                                       compiler_options=cli.decoding_compiler_options(),
                                       **settings)
    compiled = jitted.lower(params, context, jax.random.key(0)).compile()
    run = functools.partial(compiled, params, context)
  compile_s = time.perf_counter() - start

  seconds = []
  for i in range(args.warmup + args.runs):
    start = time.perf_counter()
    out = jax.block_until_ready(run(jax.random.key(args.seed + 3 + i)))
    if i >= args.warmup:
      seconds.append(time.perf_counter() - start)
  out_tokens = np.asarray(out[0] if args.no_cache else out.tokens).reshape(args.num_samples, -1)
  if out_tokens.shape != (args.num_samples, args.resp_len) or np.any(out_tokens <= 1):
    raise RuntimeError(f"expected {args.num_samples} x {args.resp_len} tokens without EOS or "
                       f"padding, got {out_tokens.shape}")

  median = common.summary(seconds)["median"]
  generated = args.num_samples * args.resp_len
  results = {
      "params": {"total": int(total), "decoder_non_embedding": int(decoder),
                 "embedding": args.vocab * args.d_model, "lm_head_tied": True},
      "use_cache": not args.no_cache, "rank_method": "accumulated",
      "generated_tokens_per_call": generated, "compile_s": compile_s,
      "sample_and_rank_s": common.summary(seconds), "generate_s": common.summary(seconds),
      "rank_s": common.summary([0.0] * len(seconds)),
      "generated_tokens_per_s": generated / median,
      "generated_tokens_per_s_incl_rank": generated / median,
      "decode_step_ms": 1e3 * median / args.resp_len,
      "tokens_per_s_basis": "median over timed calls; generated = num_samples * resp_len",
      "peak_rss_mib": common.peak_rss_mib()}
  common.emit("sample", args.label, {
      **common.shape_config(args), "batch": 1, "threads": os.cpu_count(),
      "num_samples": args.num_samples,
      "temperature": args.temperature, "no_cache": args.no_cache, "rank": "accumulated",
      "xla_cpu_defaults": args.xla_cpu_defaults,
      "runs": args.runs, "warmup": args.warmup, "seed": args.seed}, results, args.jsonl)
  print(f"{args.label} ({args.block_type}, {total / 1e6:.1f}M, cache={not args.no_cache}): "
        f"{'XLA CPU defaults, ' if args.xla_cpu_defaults else ''}"
        f"sample-and-rank {median:.3f}s, {1e3 * median / args.resp_len:.1f} ms/step, "
        f"compile {compile_s:.1f}s", file=sys.stderr)


if __name__ == "__main__":
  main()
