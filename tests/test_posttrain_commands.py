"""The PPO-ptx command end to end on chitchat: prompts from a preference file, pretraining
batches from the task's tokenised train split (the trainer's input, its position saved with
each checkpoint), and a resumed run that continues from the checkpoint. (That a restored
position gives exactly the batches an uninterrupted run reads is tested in
test_posttrain_ppo.)"""
import dataclasses
import json

import jax
import pytest

from meena_jax import checkpoints
from meena_jax.posttrain import commands, ppo, reward_model
from meena_jax.posttrain.reward_model import RewardModel
from meena_tasks import seqio_tasks
from tests.conftest import TINY, TOKEN_CACHE, init_params
from tests.test_chat import save_checkpoint
from tests.test_posttrain_data import HH

pytestmark = pytest.mark.xdist_group("chitchat")
CFG = dataclasses.replace(TINY, block_type="transformer", vocab_size=4000, dropout_rate=0.0,
                          num_decoder_layers=1)


@pytest.mark.skipif(not HH.is_dir(), reason=f"{HH} is absent (the shared preference data)")
def test_ppo_command_trains_with_ptx_batches_and_resumes_their_position(chitchat_dir, tmp_path,
                                                                        caplog):
  save_checkpoint(tmp_path / "sft", jax.device_get(init_params(CFG)))
  save_checkpoint(tmp_path / "rm", jax.device_get(
      reward_model.init_params(RewardModel(CFG), jax.random.key(1))))
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  kwargs = dict(model_config=CFG, task=task, prompt_file=str(HH / "validation.jsonl.gz"),
                policy_checkpoint=str(tmp_path / "sft"), reward_checkpoint=str(tmp_path / "rm"),
                run_dir=str(tmp_path / "ppo"), input_length=32, ptx_batch_size=2,
                ptx_target_length=16, checkpoint_every=1, data_cache_dir=TOKEN_CACHE,
                config=ppo.PPOConfig(ptx_coef=1.0, rollout_batch=4, minibatches=2, epochs=1,
                                     max_length=4))
  first = commands.train_ppo(iterations=2, **kwargs)
  manager = checkpoints.checkpoint_manager(tmp_path / "ppo")
  saved = manager.restore(2, args=checkpoints.ocp.args.Composite(
      data=checkpoints.ocp.args.JsonRestore()))["data"]
  manager.close()
  # Two update steps an iteration, each one pretraining batch: the saved position is past 4.
  assert saved["iteration"] == 2 and saved["input"]["shards"] == 1
  resumed = commands.train_ppo(iterations=3, **kwargs)
  records = [json.loads(line) for line in (tmp_path / "ppo/metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3] and resumed == records[2:]
  assert first == records[:2]
  assert all(r["ptx_loss"] > 0 for r in records)
  assert "replaying" not in caplog.text  # The position was restored, not replayed.
