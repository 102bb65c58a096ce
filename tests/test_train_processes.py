"""The train command as real processes: killed with SIGKILL and restarted, resumed on a smaller
mesh, and run as two hosts. Each run is a subprocess, since a process's device count and its
distributed setup are fixed when JAX starts."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from meena_jax.cli import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from launch import local  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.xdist_group("chitchat")
# An ET of the tests' TINY width, 1 + 1 blocks: each process spends its time starting up.
MODEL = ["--gin.ModelConfig.d_model=32", "--gin.ModelConfig.num_heads=4",
         "--gin.ModelConfig.d_ff=64", "--gin.ModelConfig.num_decoder_layers=1",
         "--gin.BATCH_SIZE=8", "--gin.INPUT_LENGTH=32", "--gin.TARGET_LENGTH=32",
         "--gin.PACKED_INPUT_LENGTH=64", "--gin.PACKED_TARGET_LENGTH=32",
         "--gin.EVAL_EVERY=0", "--gin.train.log_every=1", "--gin.train.progress=False"]


def train_command(model_dir, data_dir, steps, *extra):
  return [sys.executable, "-m", "meena_jax.train", "--gin_file=gin/runs/et_tiny_chitchat.gin",
          f"--gin.MODEL_DIR={model_dir}", f"--gin.DATA_DIR={data_dir}",
          f"--gin.TRAIN_STEPS={steps}", *MODEL, *extra]


def environment(devices):
  """A child's environment: ``devices`` CPU devices, and the tests' compilation cache (the
  children of a module compile the same steps; conftest sets it for this process only)."""
  import jax  # pylint: disable=import-outside-toplevel
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"),
      JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")


def train(model_dir, data_dir, steps, devices, *extra):
  result = subprocess.run(train_command(model_dir, data_dir, steps, *extra), cwd=REPO_ROOT,
                          env=environment(devices), capture_output=True, text=True,
                          timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def losses(model_dir) -> dict[int, float]:
  """step -> loss, the last record of a step winning (a restarted run logs steps again)."""
  lines = (model_dir / "metrics.jsonl").read_text().splitlines()
  return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def test_sigkill_then_restart_continues_bit_for_bit_and_resumes_on_a_smaller_mesh(
    chitchat_dir, tmp_path):
  n = 4
  straight, killed, smaller = tmp_path / "straight", tmp_path / "killed", tmp_path / "smaller"
  train(straight, chitchat_dir, 2 * n, 8, f"--gin.train.checkpoint_every={n}")

  process = subprocess.Popen(  # pylint: disable=consider-using-with
      train_command(killed, chitchat_dir, 2 * n, f"--gin.train.checkpoint_every={n}"),
      cwd=REPO_ROOT, env=environment(8), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.monotonic() + 600
  while not (killed / "metrics.jsonl").exists() or n + 1 not in losses(killed):
    assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)  # In steps n+2..2n (checked below): no goodbye, no flush.
  process.wait()
  process.stderr.close()
  assert process.returncode == -signal.SIGKILL
  assert 2 * n not in losses(killed), "the run ended before the kill: make steps slower"
  assert not (killed / "checkpoints" / str(2 * n)).exists()
  shutil.copytree(killed, smaller)

  train(killed, chitchat_dir, 2 * n, 8, f"--gin.train.checkpoint_every={n}")
  assert losses(killed) == losses(straight)  # Bit for bit, steps 1..2n.

  # The same checkpoint (step n, saved on 8 devices) resumed on 4.
  train(smaller, chitchat_dir, 2 * n, 4, f"--gin.train.checkpoint_every={n}")
  resumed, reference = losses(smaller), losses(straight)
  assert sorted(resumed) == list(range(1, 2 * n + 1))
  for step in range(n + 1, 2 * n + 1):  # Another mesh sums in another order: ~1e-6.
    assert resumed[step] == pytest.approx(reference[step], rel=1e-5), step


def test_two_processes_of_two_devices_train_like_one_process_of_four(chitchat_dir, tmp_path):
  shards = "--gin.train.input_shards=2"  # The same batches however many hosts read them.
  train(tmp_path / "one", chitchat_dir, 3, 4, shards)
  log = tmp_path / "hosts.log"
  with open(log, "w") as sink:
    code = local.run_local(train_command(tmp_path / "two", chitchat_dir, 3, shards),
                           processes=2, devices=2, env=environment(2), sink=sink,
                           timeout=900)
  text = log.read_text()
  assert code == 0, text[-3000:]
  assert "[p0]" in text and "[p1]" in text
  two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
  assert sorted(two) == [1, 2, 3]
  assert two == pytest.approx(one, rel=1e-6)
