"""Parameter counts of the gin model files, and the logical axis names every parameter carries."""
import flax.linen as nn
import flax.traverse_util
import gin
import pytest

from meena_jax import cli, state, summary
from meena_jax.model import Seq2Seq

AXIS_NAMES = {"embed", "mlp", "heads", "kv", "vocab", "conv_width", "conv_in", "conv_out"}


def config_from(gin_file):
  gin.clear_config()
  cli.parse_args([f"--gin_file=gin/models/{gin_file}"], "test")
  try:
    return cli.model_config()
  finally:
    gin.clear_config()


def total_parameters(cfg):
  return sum(summary.parameter_counts(state.boxed_params(Seq2Seq(cfg))).values())


def test_meena_parameter_counts_match_the_paper():
  cfg = config_from("meena_et_2.6b.gin")
  counts = summary.parameter_counts(state.boxed_params(Seq2Seq(cfg)))
  print(summary.format_parameter_table(cfg))  # Shown in the test log by `-rP`.
  total = sum(counts.values())
  assert total == pytest.approx(2.59e9, rel=0.005)
  assert counts["encoder_0"] == pytest.approx(141.1e6, rel=0.005)
  for i in range(13):
    assert counts[f"decoder_{i}"] == pytest.approx(186.9e6, rel=0.005)
  assert counts["embedding"] == 8000 * 2560
  assert cfg.decoder_self_attention_heads == 32


@pytest.mark.parametrize("et_file, transformer_file", [
    ("et_tiny.gin", "transformer_tiny.gin"),
    ("et_small.gin", "transformer_small.gin"),
    ("meena_et_2.6b.gin", "transformer_2.6b.gin"),
])
def test_transformer_baselines_match_et_parameter_counts(et_file, transformer_file):
  et, transformer = config_from(et_file), config_from(transformer_file)
  assert (et.block_type, transformer.block_type) == ("evolved", "transformer")
  assert (et.d_model, et.num_heads) == (transformer.d_model, transformer.num_heads)
  et_total = total_parameters(et)
  transformer_total = total_parameters(transformer)
  assert transformer_total == pytest.approx(et_total, rel=0.05)


def test_et_tiny_is_a_few_million_parameters():
  assert 2e6 < total_parameters(config_from("et_tiny.gin")) < 10e6


@pytest.mark.parametrize("gin_file", ["meena_et_2.6b.gin", "transformer_2.6b.gin"])
def test_every_parameter_has_logical_axes_matching_its_rank(gin_file):
  params = state.boxed_params(Seq2Seq(config_from(gin_file)))
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  assert flat
  for path, leaf in flat.items():
    assert isinstance(leaf, nn.LogicallyPartitioned), f"{path} has no logical axis names"
    assert len(leaf.names) == leaf.value.ndim, f"{path}: {leaf.names} vs {leaf.value.shape}"
    assert set(leaf.names) <= AXIS_NAMES, f"{path}: unknown axis in {leaf.names}"
