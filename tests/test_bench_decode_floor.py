"""``bench/decode_floor.py`` times exactly the matmuls one decoding step has to do."""
import argparse
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
import common  # pylint: disable=wrong-import-position
import decode_floor  # pylint: disable=wrong-import-position


def shape_args(**flags):
  parser = argparse.ArgumentParser()
  common.add_shape_flags(parser, d_model=64, heads=4, d_ff=128, vocab=100, layers_dec=3)
  return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in flags.items()])


def test_transformer_step_does_the_peers_t5_matmuls():
  """Same shapes as the peer's T5 decoder: self Q/K/V/O, cross Q/O, FFN in/out, tied head."""
  args = shape_args(block_type="transformer")
  assert (sorted(decode_floor.model_step_shapes(args))
          == sorted(decode_floor.t5_step_shapes(args)))


@pytest.mark.parametrize("heads", [4, 8, 16])  # h' = 8, 16, 16 parallel self-attention heads.
def test_evolved_step_has_17_matmuls_per_layer(heads):
  """Parallel self Q/K/V/O + encoder Q/O, three pointwise convs, self Q/K/V/O, encoder Q/O,
  FFN in/out; the encoder attentions' key/value projections run once per context."""
  args = shape_args(heads=heads)
  shapes = decode_floor.model_step_shapes(args)
  d, dff = args.d_model, args.d_ff
  assert len(shapes) == 17 * args.layers_dec + 1 and shapes[-1] == (d, args.vocab)
  per_layer = sum(a * b for a, b in shapes[:-1]) // args.layers_dec
  assert per_layer == 12 * d * d + (2 * d + d // 2 + 2 * d) * d + 2 * d * dff
