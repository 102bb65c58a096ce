"""What a gin model file builds: its parameter table (from shapes alone) and a forward pass.

  python -m meena_jax summary --gin_file=gin/models/meena_et_2.6b.gin
  python -m meena_jax summary --gin_file=gin/models/et_tiny.gin --forward

The table comes from ``jax.eval_shape`` of the real init, so the 2.6B model is "built" without
allocating a byte of it; ``--forward`` initialises real weights and runs one loss on random tokens.
"""
import re
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from meena_jax import state
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq, loss_fn


def _size(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(nn.unbox(tree))))


def parameter_counts(params) -> dict[str, int]:
  """Parameters per top-level module (``embedding``, ``encoder_0``, ..., ``decoder_norm``) of a
  params tree, or per sub-module when given one block's subtree."""
  return {name: _size(sub) for name, sub in params.items()}


def format_parameter_table(cfg: ModelConfig) -> str:
  """A table with one row per kind of module: identical blocks are counted once, times n."""
  params = state.boxed_params(Seq2Seq(cfg))
  counts = parameter_counts(params)
  total = sum(counts.values())
  order = (["embedding"] + [f"encoder_{i}" for i in range(cfg.num_encoder_layers)]
           + ["encoder_norm"] + [f"decoder_{i}" for i in range(cfg.num_decoder_layers)]
           + ["decoder_norm"])
  groups = {}  # "decoder block" -> [size of decoder_0, size of decoder_1, ...]
  for name in order:
    groups.setdefault(re.sub(r"_\d+$", " block", name), []).append(counts[name])
  lines = [f"{cfg.block_type} seq2seq: d_model={cfg.d_model} heads={cfg.num_heads} "
           f"d_ff={cfg.mlp_dim} vocab={cfg.vocab_size} "
           f"layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers}",
           f"{'module':<22}{'count':>6}{'each (M)':>12}{'total (M)':>12}{'share':>8}"]
  for group, sizes in groups.items():
    lines.append(f"{group:<22}{len(sizes):>6}{sizes[0] / 1e6:>12.2f}{sum(sizes) / 1e6:>12.2f}"
                 f"{sum(sizes) / total:>8.1%}")
  lines.append(f"{'total':<22}{'':>6}{'':>12}{total / 1e6:>12.2f}{1:>8.0%}")
  for block in ("encoder_0", "decoder_0"):
    parts = parameter_counts(params[block])
    lines.append(f"{block} by sub-module (M): " + ", ".join(
        f"{k} {v / 1e6:.3f}" for k, v in parts.items()))
  return "\n".join(lines)


def forward_check(cfg: ModelConfig, batch_size: int = 2, length: int = 32, seed: int = 0):
  """Initialises real weights and returns (mean token loss, seconds) on random tokens."""
  rng = np.random.default_rng(seed)
  tokens = lambda: jnp.asarray(rng.integers(2, cfg.vocab_size, (batch_size, length)), jnp.int32)
  encoder_tokens, targets = tokens(), tokens()
  decoder_inputs = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)))
  model = Seq2Seq(cfg)
  variables = model.init(jax.random.key(seed), encoder_tokens, decoder_inputs, targets)
  start = time.perf_counter()
  logits = model.apply(variables, encoder_tokens, decoder_inputs, targets)
  total, count = loss_fn(logits, targets)
  loss = float(total / count)
  return loss, time.perf_counter() - start


if __name__ == "__main__":  # python -m meena_jax summary: an alias of the edge.
  from meena_jax import commands  # pylint: disable=import-outside-toplevel
  commands.main(["summary", *sys.argv[1:]])
