"""Perplexity evaluation: equals exp(mean token NLL) computed by hand, on any conversation file."""
import dataclasses
import json
import math
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from meena_jax import checkpoints, cli, commands, eval as evaluation
from meena_jax.model import Seq2Seq
from meena_tasks import seqio_tasks
from tests.conftest import TINY, init_params

pytestmark = pytest.mark.xdist_group("chitchat")
CFG = dataclasses.replace(TINY, vocab_size=4000)
CONVERSATIONS = [
    ["Have you seen the new bridge downtown?", "Yes, I walked across it on Sunday morning.",
     "Was it crowded with tourists?", "Not really, most people were still asleep."],
    ["What are you cooking tonight?", "Probably a lentil soup with lots of garlic."],
    ["My cat keeps knocking the plants over.", "Maybe move them to a higher shelf then.",
     "She climbs everything, there is no higher shelf.", "Then you need plastic plants."],
]


def save_random_checkpoint(run_dir, cfg, seed=0):
  params = init_params(cfg, seed)
  manager = checkpoints.checkpoint_manager(run_dir)
  manager.save(7, args=ocp.args.Composite(
      state=ocp.args.StandardSave({"step": np.int32(7), "params": params}),
      data=ocp.args.JsonSave({"batches": 7, "seed": 0})))
  manager.wait_until_finished()
  return params


def nll_by_hand(params, examples, input_length=32, target_length=16):
  """Each example alone: pad to fixed lengths, one forward pass, NumPy log-softmax over the
  real target positions only."""
  apply = jax.jit(lambda p, e, d: Seq2Seq(CFG).apply({"params": p}, e, d))
  total, count = 0.0, 0
  for example in examples:
    inputs, targets = example["inputs"][-input_length:], example["targets"][:target_length]
    enc = np.zeros((1, input_length), np.int32)
    enc[0, :len(inputs)] = inputs
    dec = np.zeros((1, target_length), np.int32)
    dec[0, 1:len(targets)] = targets[:-1]
    logits = np.asarray(apply(params, enc, dec), np.float64)[0, :len(targets)]
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
        -1, keepdims=True)) - logits.max(-1, keepdims=True)
    total -= log_probs[np.arange(len(targets)), targets].sum()
    count += len(targets)
  return total, count


def test_eval_perplexity_of_a_jsonl_file_equals_exp_mean_nll_by_hand(chitchat_dir, tmp_path,
                                                                     monkeypatch):
  monkeypatch.chdir(tmp_path)  # The checkpoint is named relative to it, as `make demo` does.
  path = tmp_path / "mine.jsonl"
  path.write_text("".join(json.dumps({"id": f"c{i}", "turns": turns}) + "\n"
                          for i, turns in enumerate(CONVERSATIONS)))
  params = save_random_checkpoint(tmp_path / "run", CFG)
  chitchat = seqio_tasks.get_task("chitchat", chitchat_dir)
  result = evaluation.evaluate_checkpoint(
      model_config=CFG, task=chitchat, checkpoint="run", batch_size=4,
      input_length=32, target_length=16, data_dir=chitchat_dir, jsonl=str(path),
      progress=False)
  task = seqio_tasks.jsonl_task(str(path), chitchat.output_features["targets"].vocabulary
                                .sentencepiece_model_file, chitchat_dir)
  examples = list(task.get_dataset(None, split="test", shuffle=False).as_numpy_iterator())
  assert result["examples"] == len(examples) == 7  # One per reply; batches of 4, one padded.
  total, count = nll_by_hand(params, examples)
  assert result["target_tokens"] == count
  assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
  assert result["step"] == 7
  assert all(len(e["targets"]) <= 16 for e in examples)  # None trimmed: words are exact.
  assert result["words"] == sum(len(t.split()) + 1 for c in CONVERSATIONS for t in c[1:])
  saved = json.loads((tmp_path / "run" / "eval_mine.json").read_text())
  assert saved["perplexity"] == result["perplexity"]


def test_eval_names_a_missing_split_and_a_mismatched_checkpoint(chitchat_dir, tmp_path):
  save_random_checkpoint(tmp_path / "run", CFG)
  chitchat = seqio_tasks.get_task("chitchat", chitchat_dir)
  kwargs = dict(task=chitchat, checkpoint=str(tmp_path / "run"), progress=False)
  with pytest.raises(ValueError, match="has no split 'dev'"):
    evaluation.evaluate_checkpoint(model_config=CFG, split="dev", **kwargs)
  wider = dataclasses.replace(CFG, d_ff=128)
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match=r"params\['decoder_0'\]\['ffn_in'\]\['bias'\] has shape \(64,\) in "
                           r"the checkpoint but \(128,\)"):
    evaluation.evaluate_checkpoint(model_config=wider, **kwargs)


def test_unigram_perplexity_matches_the_formula():
  train = [{"decoder_target_tokens": np.array([[2, 2, 3, 1, 0]])}]
  held_out = [{"decoder_target_tokens": np.array([[2, 3, 1, 0, 0]])}]
  counts = np.ones(5) + np.array([0, 1, 2, 1, 0])  # Add-one smoothing over a 5-token vocab.
  probs = counts / counts.sum()
  expected = math.exp(-(np.log(probs[2]) + np.log(probs[3]) + np.log(probs[1])) / 3)
  assert evaluation.unigram_perplexity(train, held_out, 5) == pytest.approx(expected)


@pytest.mark.parametrize("content, message", [
    ('{"id": "a", "turns": ["hello there", "hi how are you"]}\n{"id": "b", "turns": [\n',
     r"error: .*bad\.jsonl:2: malformed JSON \(Expecting value, column 1\)"),
    ("", r"error: conversations_jsonl/file_bad_jsonl_\w+: no example survived the filters "
         r"\(test: no messages\)"),
])
def test_a_bad_or_empty_jsonl_is_one_line_and_leaves_nothing_behind(chitchat_dir, tmp_path,
                                                                    monkeypatch, content,
                                                                    message):
  import gin  # pylint: disable=import-outside-toplevel
  save_random_checkpoint(tmp_path / "run", CFG)
  bad = tmp_path / "bad.jsonl"
  bad.write_text(content)
  before = sorted(p.name for p in pathlib.Path(chitchat_dir).iterdir())
  monkeypatch.chdir(cli.REPO_ROOT)
  try:
    with pytest.raises(SystemExit, match=message) as error:
      commands.evaluate(["--gin_file=gin/runs/et_tiny_chitchat.gin", f"--jsonl={bad}",
                       f"--gin.DATA_DIR={chitchat_dir}", f"--gin.CHECKPOINT={tmp_path / 'run'}"])
  finally:
    gin.clear_config()
  assert "\n" not in str(error.value)
  assert sorted(p.name for p in pathlib.Path(chitchat_dir).iterdir()) == before
