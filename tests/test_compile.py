"""meena_jax.compile: the trainer's, evaluator's and chat's own programs compiled for real TPU
slices on this CPU machine (libtpu, compile only: nothing is allocated or run)."""
import functools
import json
import sys

import gin
import pytest

from meena_jax import commands, decoding, slices
from meena_jax import compile as compile_lib
from meena_jax import state as state_lib
from meena_jax.cli import REPO_ROOT
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq

pytestmark = [
    pytest.mark.xdist_group("tpu_compile"),
    pytest.mark.skipif(not slices.libtpu_available(),
                       reason="libtpu is not installed (pip install -e '.[tpu]'): nothing can "
                              "be compiled for a TPU here"),
]

# Wide enough that every split over `model` (heads, FFN, vocabulary, conv outputs) is 8-way and
# TPU tiles pad little; one block each, no dropout: a small program, so it compiles in seconds.
CFG = ModelConfig(vocab_size=1024, d_model=2048, num_heads=8, d_ff=4096, num_encoder_layers=1,
                  num_decoder_layers=1, dropout_rate=0.0)
SETTINGS = dict(model_config=CFG, batch_size=8, input_length=32, target_length=32,
                train_steps=1000)
CHAT = {"batch_size": 8, "context_length": 32}
DECODING = decoding.DecodingConfig(max_length=16)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  yield
  gin.clear_config()


@pytest.fixture(name="v3_8_report")
def _v3_8_report_fixture():
  return v3_8_report()


@functools.lru_cache(maxsize=None)  # Not a module fixture: xdist may interleave other modules.
def v3_8_report():
  return compile_lib.compile_run({**SETTINGS, "mesh_model": 8}, slices.parse_accelerator("v3-8"),
                                 chat={**CHAT, "mesh_model": 8}, decoding_config=DECODING,
                                 progress=lambda line: None)


def test_train_eval_and_sampler_compile_for_v3_8_and_fit(v3_8_report):
  report = v3_8_report
  assert report["devices"] == 8 and report["mesh"] == {"data": 1, "model": 8}
  assert set(report["programs"]) == {"train_step", "eval_step", "sample", "sample_first_step",
                                     "sample_next_step"}
  for name, entry in report["programs"].items():
    memory = entry["memory"]
    assert 0 < memory["arguments"] and 0 < memory["total"] < 16 * 2 ** 30, name
    assert memory["headroom"] > 0, name
  train = report["programs"]["train_step"]
  assert 0 < train["mfu"] < 1 and train["predicted_s"] > 0
  # XLA counts every FLOP it runs; the model's matmuls are most, never more, of them.
  assert 0.5 * train["flops_xla"] < train["flops_model"] <= train["flops_xla"]
  sample = report["programs"]["sample"]
  first, following = (report["programs"][n]["predicted_s"]
                      for n in ("sample_first_step", "sample_next_step"))
  assert sample["predicted_call_s"] == pytest.approx(first + 15 * following)


def test_the_model_axis_carries_collectives_and_splits_the_kernels_eight_ways(v3_8_report):
  train = v3_8_report["programs"]["train_step"]
  assert train["collectives"]["all-reduce"]["over"].get("model", 0) > 0
  assert set(train["collectives"]["all-reduce"]["over"]) == {"model"}  # data has one device.
  # The same eval step with the parameters replicated: the per-device argument bytes shrink
  # by 7/8 of every kernel the rules split over `model` (FFN, attention, conv outputs, vocab).
  one = compile_lib.compile_run({**SETTINGS, "mesh_model": 1}, slices.parse_accelerator("v3-8"),
                                programs=("eval",), progress=lambda line: None)
  split = state_lib.abstract_params(Seq2Seq(CFG), _mesh(8))
  whole = sum(leaf.size * leaf.dtype.itemsize for leaf in _leaves(split)
              if "model" in tuple(leaf.sharding.spec))
  ffn_and_attention = [leaf for path, leaf in _leaves_with_path(split)
                       if ("ffn_in" in path or "query" in path) and "kernel" in path]
  assert ffn_and_attention and all(
      leaf.sharding.shard_shape(leaf.shape)[leaf.sharding.spec.index("model")]
      == leaf.shape[leaf.sharding.spec.index("model")] // 8 for leaf in ffn_and_attention)
  saved = (one["programs"]["eval_step"]["memory"]["arguments"]
           - v3_8_report["programs"]["eval_step"]["memory"]["arguments"])
  assert saved == pytest.approx(whole * 7 / 8, rel=0.05)


def test_v4_8_compiles_with_its_four_megacore_devices():
  report = compile_lib.compile_run({**SETTINGS, "mesh_model": 4},
                                   slices.parse_accelerator("v4-8"),
                                   chat={**CHAT, "mesh_model": 4}, decoding_config=DECODING,
                                   progress=lambda line: None)
  assert report["devices"] == 4 and report["hbm_bytes"] == 32 * 2 ** 30
  for name, entry in report["programs"].items():
    assert 0 < entry["memory"]["total"] < 32 * 2 ** 30, name
    assert entry["predicted_s"] and entry["predicted_s"] > 0, name  # ConcatBitcast added back.
  assert report["programs"]["train_step"]["collectives"]["all-reduce"]["over"]["model"] > 0


def test_the_command_prints_the_table_and_appends_a_peer_bench_record(tmp_path, capsys):
  record = tmp_path / "compile.jsonl"
  commands.compile_programs(["--gin_file=gin/runs/et_tiny_chitchat.gin", "--accelerator_type=v5e-8",
                    "--programs=eval", f"--json={record}", "--gin.BATCH_SIZE=8"])
  printed = capsys.readouterr().out
  assert "v5litepod-8: 8 devices on 1 host(s)" in printed and "eval_step" in printed
  line = json.loads(record.read_text().splitlines()[-1])
  assert (line["schema"], line["peer"], line["mode"]) == ("peer-bench/v1", "meena_jax", "compile")
  assert line["results"]["programs"]["eval_step"]["memory"]["total"] > 0


@pytest.mark.parametrize("flags, message", [
    (["--accelerator_type=v9-8"], "--accelerator_type=v9-8: expected v2-N"),
    (["--accelerator_type=v3-8", "--gin.MESH_MODEL=3"],
     "MESH_DATA x MESH_MODEL (train.mesh_data, train.mesh_model) on v3-8: mesh data=-1 model=3"),
    (["--accelerator_type=v3-8", "--programs=train,decode"], "--programs=train,decode: unknown"),
])
def test_bad_input_is_one_line_naming_the_flag(flags, message):
  with pytest.raises(SystemExit) as error:
    commands.compile_programs(["--gin_file=gin/runs/et_tiny_chitchat.gin", *flags])
  assert message in str(error.value) and "\n" not in str(error.value)


def test_without_libtpu_the_error_names_the_install_step(monkeypatch):
  monkeypatch.setattr(slices, "libtpu_available", lambda: False)
  with pytest.raises(SystemExit, match=r"libtpu is not installed.*pip install -e '.\[tpu\]'"):
    commands.compile_programs(["--gin_file=gin/runs/et_tiny_chitchat.gin", "--accelerator_type=v3-8"])


def test_the_launcher_refuses_a_run_whose_activations_overflow_hbm(capsys):
  """The parameters and slots (what the arithmetic check counts) are megabytes; the logits of
  16,384 examples per device are not, and only the compiled program knows."""
  sys.path.insert(0, str(REPO_ROOT))
  from launch import tpu_pod  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit) as error:
    tpu_pod.main(["--accelerator_type=v3-8", "--tpu_name=t", "--zone=z", "--project=p",
                  "--git_ref=main", "--repo_url=https://example.com/meena_jax",
                  "--gin_file=gin/runs/et_tiny_chitchat.gin", "--gin.MODEL_DIR=gs://b/run",
                  "--gin.BATCH_SIZE=131072", "--dry_run"])
  message = str(error.value)
  assert message.startswith("the run does not fit a v3-8 device: the compiler says "
                            "RESOURCE_EXHAUSTED") or message.startswith(
                                "the compiled train_step does not fit")
  assert "raise MESH_MODEL (now 1), lower BATCH_SIZE" in message and "\n" not in message
  printed = capsys.readouterr().out
  assert "compiling the train and eval steps for v3-8" in printed
  assert "gcloud" not in printed  # Refused before any command was printed.


def _mesh(model):
  from meena_jax import partitioning  # pylint: disable=import-outside-toplevel
  return partitioning.make_mesh(-1, model, slices.topology_devices(
      slices.parse_accelerator("v3-8")))


def _leaves(tree):
  import jax  # pylint: disable=import-outside-toplevel
  return jax.tree_util.tree_leaves(tree)


def _leaves_with_path(tree):
  import jax  # pylint: disable=import-outside-toplevel
  return [(jax.tree_util.keystr(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def test_slices_give_the_published_grids_and_device_counts():
  expected = {"v3-8": ("v3:2x2", 8, 1), "v3-32": ("v3:4x4", 32, 4),
              "v3-2048": ("v3:32x32", 2048, 256), "v4-8": ("v4:2x2x1", 4, 1),
              "v4-128": ("v4:4x4x4", 64, 16), "v5litepod-16": ("v5e:4x4", 16, 2),
              "v5litepod-256": ("v5e:16x16", 256, 32)}
  for name, (topology, devices, hosts) in expected.items():
    slice_ = slices.parse_accelerator(name)
    assert (slice_.topology_name(), slice_.devices, slice_.hosts) == (topology, devices, hosts)
    found = slices.topology_devices(slice_)
    assert len(found) == devices and len({d.process_index for d in found}) == hosts, name
