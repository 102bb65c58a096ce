"""launch/tpu_pod.py: the dry run prints exactly the golden commands, the checks refuse what
cannot run before anything is created, and a launch runs its commands in order and stops at
the first failure (against a fake ``gcloud`` on PATH: no network, no TPU).

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest <this>``.
"""
import os
import sys

import pytest

import gin
from meena_jax import slices
from meena_jax.cli import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from launch import tpu_pod  # pylint: disable=wrong-import-position

GOLDEN = REPO_ROOT / "tests" / "golden"
WHERE = ["--zone=europe-west4-a", "--project=my-project"]
TINY = ["--gin_file=gin/runs/et_tiny_chitchat.gin"]
GIT = ["--git_ref=main", "--repo_url=https://github.com/my-org/meena_jax"]
CASES = {
    "v3-8": ["--tpu_name=tiny-v3-8", "--accelerator_type=v3-8", *WHERE,
             "--wheel=dist/meena_jax-0.1.0-py3-none-any.whl", *TINY,
             "--gin.MODEL_DIR=gs://my-bucket/tiny-v3-8", "--gin.BATCH_SIZE=64"],
    "v3-32": ["--tpu_name=tiny-v3-32", "--accelerator_type=v3-32", *WHERE, *GIT, "--spot",
              *TINY, "--gin.MODEL_DIR=gs://my-bucket/tiny-v3-32", "--gin.BATCH_SIZE=256"],
    "v3-2048": ["--tpu_name=meena", "--accelerator_type=v3-2048", *WHERE, "--queued",
                "--git_ref=v0.1.0", "--repo_url=https://github.com/my-org/meena_jax",
                "--gin_file=gin/runs/meena_2.6b_pod.gin",
                "--gin.MODEL_DIR=gs://my-bucket/meena-2.6b", "--skip_storage_check"],
}


@pytest.fixture(autouse=True)
def _clean(gcs, monkeypatch):
  # Storage is checked against the emulator, where these buckets exist.
  for bucket in ("my-bucket", "bkt"):
    gcs.create_bucket(bucket)
  monkeypatch.chdir(REPO_ROOT)
  # These tests check the plan and the arithmetic fit; the compiled fit (minutes for Meena)
  # is tested in test_compile.py.
  monkeypatch.setattr(slices, "libtpu_available", lambda: False)
  yield
  gin.clear_config()


@pytest.mark.parametrize("name", sorted(CASES))
def test_dry_run_prints_exactly_the_golden_commands(name, capsys):
  tpu_pod.main([*CASES[name], "--dry_run"])
  printed = capsys.readouterr().out
  golden = GOLDEN / f"tpu_pod_{name}.txt"
  if os.environ.get("UPDATE_GOLDEN"):
    golden.write_text(printed)
  assert printed == golden.read_text()


def test_slice_facts_devices_and_hosts():
  facts = {name: (s.devices, s.hosts) for name in
           ["v3-8", "v3-32", "v3-2048", "v2-32", "v4-8", "v4-32", "v5p-16", "v5e-8",
            "v5litepod-16", "v5litepod-256"]
           for s in [tpu_pod.parse_accelerator(name)]}
  assert facts == {"v3-8": (8, 1), "v3-32": (32, 4), "v3-2048": (2048, 256),
                   "v2-32": (32, 4), "v4-8": (4, 1), "v4-32": (16, 4), "v5p-16": (8, 2),
                   "v5e-8": (8, 1), "v5litepod-16": (16, 2), "v5litepod-256": (256, 32)}
  assert tpu_pod.parse_accelerator("v5e-16").accelerator_type == "v5litepod-16"


def refusal(*argv) -> str:
  with pytest.raises(SystemExit) as error:
    tpu_pod.main([*argv, "--dry_run"])
  return str(error.value)


def tiny_on(accelerator, *gin_flags):
  return [f"--accelerator_type={accelerator}", "--tpu_name=t", *WHERE, *GIT, *TINY,
          "--gin.MODEL_DIR=gs://bkt/run", *gin_flags]


@pytest.mark.parametrize("accelerator, message", [
    ("v3-24", ("--accelerator_type=v3-24: v3 slices have 8, 32, 64, 128, 256, 512, 1024, "
               "2048 TensorCores")),
    ("v4-12", "--accelerator_type=v4-12: v4 slices have a multiple of 8 TensorCores, 8 to 8192"),
    ("v9-8", ("--accelerator_type=v9-8: expected v2-N, v3-N, v4-N, v5p-N or v5litepod-N "
              "(v5e-N)")),
])
def test_unknown_slices_are_refused(accelerator, message):
  assert refusal(*tiny_on(accelerator)) == message


def test_a_mesh_that_does_not_fit_the_slice_is_refused():
  mesh = ("the gin mesh MESH_DATA={} x MESH_MODEL={} (train.mesh_data, train.mesh_model) on "
          "--accelerator_type={} ({} JAX devices): ")
  assert refusal(*tiny_on("v3-32", "--gin.MESH_MODEL=3")) == (
      mesh.format(-1, 3, "v3-32", 32) + "32 devices do not divide by 3")
  assert refusal(*tiny_on("v3-32", "--gin.MESH_DATA=2", "--gin.MESH_MODEL=8")) == (
      mesh.format(2, 8, "v3-32", 32) + "2 x 8 = 16 devices, not 32")
  # v4 counts TensorCores but JAX sees one megacore device per chip: v4-32 has 16 devices.
  assert refusal(*tiny_on("v4-32", "--gin.MESH_DATA=32")) == (
      mesh.format(32, 1, "v4-32", 16) + "32 x 1 = 32 devices, not 16")


def test_a_model_that_does_not_split_over_the_model_axis_is_refused_naming_the_parameter():
  message = refusal(*tiny_on("v3-32", "--gin.MESH_MODEL=32", "--gin.BATCH_SIZE=8"))
  assert message.startswith("parameter ")
  assert "does not divide over mesh axis 'model' of 32 devices" in message


def test_a_batch_that_does_not_split_is_refused():
  assert refusal(*tiny_on("v3-32", "--gin.BATCH_SIZE=48")) == (
      "global batch BATCH_SIZE=48 (train.batch_size) in 1 microbatches "
      "(train.num_microbatches) does not divide over the mesh's data axis of 32 devices: use "
      "a multiple of 32, or another MESH_DATA")
  assert refusal(*tiny_on("v3-32", "--gin.MESH_DATA=2", "--gin.MESH_MODEL=16",
                          "--gin.BATCH_SIZE=2")) == (
      "global batch BATCH_SIZE=2 (train.batch_size) does not split over 4 input shards on "
      "the 4 hosts of v3-32: use a multiple of 4")


def test_model_dir_must_be_remote_on_a_multi_host_slice():
  argv = [a for a in tiny_on("v3-32", "--gin.BATCH_SIZE=256") if "MODEL_DIR" not in a]
  assert refusal(*argv, "--gin.MODEL_DIR=/tmp/run") == (
      "MODEL_DIR=/tmp/run: v3-32 has 4 hosts, which must all write one checkpoint: use a "
      "gs:// path (--gin.MODEL_DIR=gs://BUCKET/run)")
  assert refusal(*argv) == ("train.model_dir (the MODEL_DIR macro) is required: pass "
                            "--gin.MODEL_DIR=gs://BUCKET/run")


def test_a_local_model_dir_on_one_host_needs_keep(capsys):
  argv = [a for a in tiny_on("v3-8") if "MODEL_DIR" not in a] + ["--gin.MODEL_DIR=/tmp/run"]
  assert refusal(*argv) == ("MODEL_DIR=/tmp/run is on the TPU VM's disk, which is deleted with "
                            "the slice: use a gs:// path, or pass --keep")
  tpu_pod.main([*argv, "--keep", "--dry_run"])
  printed = capsys.readouterr().out
  assert "# tail:" in printed and "# delete:" not in printed
  assert "--distributed" not in printed  # One host: no cluster to join.


def test_a_train_state_larger_than_device_memory_is_refused():
  assert refusal("--accelerator_type=v3-8", "--tpu_name=t", *WHERE, *GIT,
                 "--gin_file=gin/runs/meena_2.6b_pod.gin", "--gin.MODEL_DIR=gs://bkt/meena",
                 "--gin.MESH_MODEL=1", "--gin.BATCH_SIZE=8") == (
      "the train state does not fit: 9.66 GiB of parameters, the same again of gradients and "
      "79.5 MiB of Adafactor state per device exceed the 16.00 GiB of a v3-8 device; raise "
      "MESH_MODEL (now 1) or use a larger slice")


def test_install_source_and_gin_files_are_checked():
  argv = [a for a in tiny_on("v3-32", "--gin.BATCH_SIZE=256") if a not in GIT]
  assert refusal(*argv) == (
      "give what to install: --wheel=dist/meena_jax-0.1.0-py3-none-any.whl, or --git_ref=REF "
      "with --repo_url=URL (not both)")
  assert refusal(*argv, "--git_ref=main") == (
      "--git_ref=main needs --repo_url (the workers clone it)")
  outside = str(REPO_ROOT / "gin/runs/et_tiny_chitchat.gin")
  assert refusal(*argv, *GIT, f"--gin_file={outside}") == (
      f"--gin_file={outside}: workers read gin files from their copy of the repository; give "
      f"a path relative to {REPO_ROOT}")


def fake_gcloud(tmp_path, monkeypatch, fail_on="NEVER"):
  """A gcloud that logs its arguments, says ACTIVE when asked for a state, and fails (exit 3)
  on the call whose arguments contain ``fail_on``."""
  bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(
      "#!/bin/sh\n"
      f'echo "$*" >> {log}\n'
      f'case "$*" in *"{fail_on}"*) echo "ERROR: (gcloud) quota exceeded" >&2; exit 3;; esac\n'
      'case "$*" in *describe*) echo ACTIVE;; *) echo "done: $4";; esac\n')
  (bin_dir / "gcloud").chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
  return log


def test_a_launch_runs_every_command_in_order(tmp_path, monkeypatch, capsys):
  log = fake_gcloud(tmp_path, monkeypatch)
  wheel = tmp_path / "meena_jax-0.1.0-py3-none-any.whl"
  wheel.write_bytes(b"")
  tpu_pod.main(["--tpu_name=t", "--accelerator_type=v3-8", *WHERE, "--queued",
                f"--wheel={wheel}", *TINY, "--gin.MODEL_DIR=gs://bkt/run", "--gin.BATCH_SIZE=8"])
  lines = log.read_text().splitlines()
  assert [" ".join(line.split()[2:4]) for line in lines] == [
      "queued-resources create", "queued-resources describe", "tpu-vm ssh", "tpu-vm scp",
      "tpu-vm ssh", "tpu-vm ssh", "tpu-vm ssh", "queued-resources delete"]
  assert lines[3].startswith(f"compute tpus tpu-vm scp --recurse {wheel} gin t:~/meena_jax/ ")
  assert capsys.readouterr().out.endswith("done: delete\n")  # Each command's output shows.


def test_a_failing_command_stops_the_launch_with_its_output(tmp_path, monkeypatch):
  log = fake_gcloud(tmp_path, monkeypatch, fail_on="pip install")
  with pytest.raises(SystemExit) as error:
    tpu_pod.main(tiny_on("v3-32", "--gin.BATCH_SIZE=256"))
  message = str(error.value)
  assert message.startswith("install failed (exit 3): gcloud compute tpus tpu-vm ssh t ")
  assert "--- its last output ---\nERROR: (gcloud) quota exceeded\n" in message
  assert message.endswith(
      "The slice may still be up; delete it with:\n  gcloud compute tpus tpu-vm delete t "
      "--zone=europe-west4-a --project=my-project --quiet")
  assert [line.split()[3] for line in log.read_text().splitlines()] == ["create", "ssh"]
