"""Post-training on 8 fake CPU devices (a subprocess: the device count is fixed when JAX
starts): PPO-ptx and reward-model training on a (data=4, model=2) mesh match one device."""
import json

import pytest

from tests.test_multidevice import run_worker


def test_ppo_and_reward_model_on_a_mesh_match_one_device():
  report = json.loads(run_worker("tests.workers.posttrain_sharded", 8))
  assert report["devices"] == 8
  one, mesh = report["1 device"], report["data=4,model=2"]
  assert len(one["ppo"]) == 2
  for a, b in zip(one["ppo"], mesh["ppo"]):
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
  assert mesh["rm_losses"] == pytest.approx(one["rm_losses"], rel=1e-4)
  assert mesh["misplaced"] == []
