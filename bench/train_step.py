"""Train-step throughput of meena_jax on the peer benchmark's shapes (``peer-bench/v1``).

  python bench/train_step.py --label small --d-model 512 --layers-enc 1 --layers-dec 6 \
      --heads 8 --d-ff 2048 --batch 16 --steps 10 --jsonl results.jsonl

Same shapes, token counting and random batches as ``../shared/bench/peers/hf_seq2seq.py train``
(ids in [2, vocab), fresh each step, ctx = resp = 128, vocab 8000). The step is the real jitted
``train_step`` (forward, backward, Adafactor) on a one-device mesh; compilation is timed apart,
then ``--warmup`` untimed steps, then ``--steps`` timed ones with ``block_until_ready``.
``forward_s`` and ``optimizer_s`` time a jitted forward pass and a jitted optimizer update alone;
``backward_s`` is the step less both. ``achieved_gflops_analytic`` uses XLA's own FLOP count of
the compiled step.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_shape_flags(parser, label="small", d_model=512, layers_enc=1, layers_dec=6,
                         heads=8, d_ff=2048)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--jsonl")
  args = parser.parse_args(argv)

  import jax
  import numpy as np
  from meena_jax import partitioning, train_step
  from meena_jax import state as state_lib
  from meena_jax.model import Seq2Seq, loss_fn, model_inputs

  cfg = common.model_config(args, dropout_rate=0.1)
  model, optimizer = Seq2Seq(cfg), train_step.make_optimizer(1e-3)
  rng = np.random.default_rng(args.seed)

  def batch():
    targets = rng.integers(2, args.vocab, (args.batch, args.resp_len)).astype(np.int32)
    return {"encoder_input_tokens": rng.integers(2, args.vocab, (args.batch, args.ctx_len),
                                                 dtype=np.int32),
            "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
            "decoder_target_tokens": targets,
            "decoder_loss_weights": np.ones(targets.shape, np.float32)}

  mesh = partitioning.make_mesh(devices=jax.devices()[:1])
  abstract = state_lib.abstract_state(state_lib.abstract_params(model, mesh), optimizer)
  state = state_lib.create_state(model, optimizer, jax.random.key(args.seed), abstract)
  shardings = state_lib.shardings(abstract)
  params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  step = train_step.jit_train_step(model, optimizer, shardings,
                                   partitioning.batch_sharding(mesh))
  key = jax.random.key(args.seed + 1)
  start = time.perf_counter()
  compiled = step.lower(state, batch(), key).compile()
  compile_s = time.perf_counter() - start
  xla_flops = (compiled.cost_analysis() or {}).get("flops", 0.0)

  def timed(fn, *fn_args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*fn_args))
    return time.perf_counter() - start, out

  losses, step_s = [], []
  for i in range(args.warmup + args.steps):
    seconds, (state, metrics) = timed(compiled, state, batch(), key)
    losses.append(float(metrics["loss_sum"] / metrics["token_count"]))
    if i >= args.warmup:
      step_s.append(seconds)

  forward = jax.jit(lambda p, b: loss_fn(model.apply(
      {"params": p}, **model_inputs(b), deterministic=False, rngs={"dropout": key}),
      b["decoder_target_tokens"]))
  update = jax.jit(lambda g, s, p: optimizer.update(g, s, p))
  example = batch()
  jax.block_until_ready(forward(state.params, example))
  jax.block_until_ready(update(state.params, state.opt_state, state.params))
  forward_s = [timed(forward, state.params, batch())[0] for _ in range(args.steps)]
  optimizer_s = [timed(update, state.params, state.opt_state, state.params)[0]
                 for _ in range(args.steps)]

  median = common.summary(step_s)["median"]
  target_tokens, total_tokens = args.batch * args.resp_len, args.batch * (
      args.ctx_len + args.resp_len)
  backward = [max(s - common.summary(forward_s)["median"] - common.summary(optimizer_s)["median"],
                  0.0) for s in step_s]
  results = {
      "params": {"total": int(params), "embedding": args.vocab * args.d_model,
                 "lm_head_tied": True},
      "tokens_per_step": {"target": target_tokens, "total": total_tokens},
      "compile_s": compile_s, "step_s": common.summary(step_s),
      "forward_s": common.summary(forward_s), "backward_s": common.summary(backward),
      "optimizer_s": common.summary(optimizer_s),
      "target_tokens_per_s": target_tokens / median, "total_tokens_per_s": total_tokens / median,
      "tokens_per_s_basis": "median step time",
      "achieved_gflops_6PT_target": 6 * params * target_tokens / median / 1e9,
      "achieved_gflops_analytic": xla_flops / median / 1e9,
      "gflops_analytic_basis": "XLA cost analysis of the compiled step",
      "loss_first": losses[0], "loss_last": losses[-1], "peak_rss_mib": common.peak_rss_mib()}
  common.emit("train", args.label, {
      **common.shape_config(args), "batch": args.batch, "threads": os.cpu_count(),
      "seed": args.seed, "warmup": args.warmup,
      "steps": args.steps}, results, args.jsonl)
  print(f"{args.label} ({args.block_type}, {params / 1e6:.1f}M): "
        f"{results['target_tokens_per_s']:.0f} target tokens/s, step {median:.3f}s, "
        f"compile {compile_s:.1f}s", file=sys.stderr)


if __name__ == "__main__":
  main()
