"""Partitioning on 8 fake CPU devices (a subprocess, since the device count is fixed when JAX
starts): every mesh trains like one device, and parameters sit where the rules say."""
import json
import os
import subprocess
import sys

import pytest

from meena_jax.cli import REPO_ROOT

# Three steps of float32 training on different meshes differ only in the order XLA sums
# partial results: observed |diff| <= 8e-6 on losses near 4.6 (2e-6 relative).
LOSS_RTOL = 1e-5


def run_worker(module: str, devices: int, *args) -> str:
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"))
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_every_mesh_gives_the_one_device_losses_and_the_rules_shardings():
  report = json.loads(run_worker("tests.workers.train_meshes", 8))
  assert report["devices"] == 8
  reference = report["1 device"]["losses"]
  assert len(reference) == 3 and reference[-1] < reference[0]
  for mesh in ("data=8", "data=2,model=4", "model=8"):
    assert report[mesh]["losses"] == pytest.approx(reference, rel=LOSS_RTOL), mesh
    assert report[mesh]["wrong_shardings"] == [], mesh
  assert report["indivisible_error"].startswith(
      "parameter ['decoder_0']['encoder_attention']['key']['kernel']: axis 'heads' of size 4 "
      "does not divide over mesh axis 'model' of 8 devices")
