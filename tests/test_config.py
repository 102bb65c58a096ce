"""gin model configuration: bad values fail with the binding named, flags reach the model."""
import gin
import pytest

from meena_jax import cli, commands


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def config_with(*bindings, gin_file="gin/models/et_tiny.gin"):
  gin.clear_config()
  cli.parse_args([f"--gin_file={gin_file}"] + [f"--gin.{b}" for b in bindings], "test")
  return cli.model_config()


@pytest.mark.parametrize("binding, named, why", [
    ("ModelConfig.d_model=250", "ModelConfig.d_model=250", "divisible by ModelConfig.num_heads"),
    ("ModelConfig.num_heads=7", "ModelConfig.d_model=256", "divisible by ModelConfig.num_heads"),
    ("ModelConfig.block_type='evolvd'", "ModelConfig.block_type='evolvd'", "unknown block type"),
    ("ModelConfig.dtype='float16'", "ModelConfig.dtype='float16'", "'float32' or 'bfloat16'"),
    ("ModelConfig.num_decoder_layers=0", "ModelConfig.num_decoder_layers=0", ">= 1"),
])
def test_bad_configuration_names_the_binding(binding, named, why):
  with pytest.raises(ValueError) as error:
    config_with(binding)
  assert named in str(error.value) and why in str(error.value)


def test_odd_d_model_is_refused_naming_the_reason():
  # d_model 255 with 5 heads divides, but the ET has d_model/2-wide conv branches.
  with pytest.raises(ValueError, match=r"ModelConfig.d_model=255.*d_model/2"):
    config_with("ModelConfig.d_model=255", "ModelConfig.num_heads=5")
  with pytest.raises(ValueError, match="ModelConfig.d_model=255.*timing signal"):
    config_with("ModelConfig.d_model=255", "ModelConfig.num_heads=5",
                "ModelConfig.block_type='transformer'")


def test_misspelt_binding_fails_at_parse_time():
  with pytest.raises(ValueError, match="d_modle"):
    config_with("ModelConfig.d_modle=64")


def test_missing_gin_file_is_named():
  with pytest.raises(SystemExit, match="no_such_model.gin"):
    config_with(gin_file="gin/models/no_such_model.gin")


def test_flags_override_the_gin_file_and_bare_strings_need_no_quotes():
  cfg = config_with("ModelConfig.block_type=transformer", "ModelConfig.d_model=128",
                    "VOCAB_SIZE=512")
  assert (cfg.block_type, cfg.d_model, cfg.vocab_size, cfg.num_heads) == (
      "transformer", 128, 512, 4)


def test_summary_command_builds_the_model_and_runs_a_forward_pass(capsys):
  commands.summary(["--gin_file=gin/models/et_tiny.gin", "--gin.VOCAB_SIZE=300",
                "--gin.ModelConfig.d_model=64", "--forward"])
  out = capsys.readouterr().out
  assert "evolved seq2seq: d_model=64 heads=4" in out
  assert "decoder block" in out and "forward pass on random tokens" in out
