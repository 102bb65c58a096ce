"""Training input: tokenised examples read by index, packed first-fit, resumed from a saved
position without replaying what came before."""
import json

import gin
import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from meena_jax import commands, input_pipeline, token_store
from meena_jax.model import Seq2Seq
from meena_jax.train_step import loss_fn, model_inputs
from tests.conftest import TINY

ROWS = {"inputs": 48, "targets": 24}


def synthetic_store(n=200, seed=0, cut=(16, 8)) -> token_store.TokenStore:
  """``n`` examples of 1..cut tokens in 2..60 (TINY's vocabulary; 0 pads, 1 is EOS)."""
  rng = np.random.default_rng(seed)
  tokens, offsets = {}, {}
  for feature, longest in zip(token_store.FEATURES, cut):
    parts = [rng.integers(2, 61, rng.integers(1, longest + 1)).astype(np.int32)
             for _ in range(n)]
    tokens[feature] = np.concatenate(parts)
    offsets[feature] = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
  return token_store.TokenStore.from_arrays(tokens, offsets, "synthetic")


class CountingStore:
  """A store that counts the examples read from it, through the shards it hands out too."""

  def __init__(self, store, counter=None):
    self.store, self._counter = store, counter if counter is not None else [0]

  @property
  def reads(self):
    return self._counter[0]

  def __len__(self):
    return len(self.store)

  def __getitem__(self, index):
    self._counter[0] += 1
    return self.store[index]

  def max_length(self, feature):
    return self.store.max_length(feature)

  def shard(self, index, count, progress=False):
    return CountingStore(self.store.shard(index, count, progress), self._counter)


def take(train_input, n):
  return [next(train_input) for _ in range(n)]


def assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_restored_position_continues_exactly_and_reads_no_earlier_example():
  store = synthetic_store()
  straight = input_pipeline.TrainInput([(store, 1.0)], 8, ROWS, seed=3, packing_bins=8)
  take(straight, 40)  # Several epochs of 200 examples.
  saved = straight.state()
  expected = take(straight, 5)
  counting = CountingStore(store)
  resumed = input_pipeline.TrainInput([(counting, 1.0)], 8, ROWS, seed=3, packing_bins=8)
  resumed.restore(saved)
  assert_same(take(resumed, 5), expected)
  # Constant time: at most the current packing round is re-read, never the 40 batches before.
  per_batch = 8 * 4  # Rows x a generous examples-per-row bound.
  assert counting.reads <= 6 * per_batch + 8 * 4, counting.reads


def test_every_epoch_visits_each_example_once_in_a_new_order_and_shards_split_the_examples():
  store = synthetic_store(n=64)
  ids = {tuple(store[i]["inputs"]) + (-1,) + tuple(store[i]["targets"]): i
         for i in range(len(store))}
  assert len(ids) == len(store)
  # Two input shards read by one process: rows 0-1 of a batch are shard 0's, rows 2-3 shard 1's.
  batches = take(input_pipeline.TrainInput([(store, 1.0)], 4, ROWS, seed=0, input_shards=2,
                                           packing_bins=2), 30)
  seen = {}
  for shard, rows in ((0, slice(0, 2)), (1, slice(2, 4))):
    order = [ids[e] for batch in batches
             for e in _examples({k: v[rows] for k, v in batch.items()})]
    first, second = order[:32], order[32:64]
    assert sorted(first) == sorted(second) == list(range(32 * shard, 32 * (shard + 1)))
    assert first != second  # Reshuffled each epoch.
    seen[shard] = set(first)
  assert not seen[0] & seen[1]


def _examples(batch):
  """The (inputs, targets) of every segment of a packed batch, in row order."""
  found = []
  for row in range(batch["encoder_segment_ids"].shape[0]):
    for segment in range(1, batch["decoder_segment_ids"][row].max() + 1):
      inputs = batch["encoder_input_tokens"][row][batch["encoder_segment_ids"][row] == segment]
      targets = batch["decoder_target_tokens"][row][
          batch["decoder_segment_ids"][row] == segment]
      found.append(tuple(inputs) + (-1,) + tuple(targets))
  return found


def test_a_packed_batch_scores_exactly_as_its_examples_unpacked():
  """Segments keep attention, the ET convolutions and positions apart: the packed rows'
  summed NLL equals that of the same examples one per row (SeqIO's unpacked converter)."""
  store = synthetic_store(n=40, seed=1)
  packed = next(input_pipeline.TrainInput([(store, 1.0)], 4, ROWS, seed=0, packing_bins=4))
  assert packed["decoder_segment_ids"].max() >= 3  # Really packed.
  examples = [dict(inputs=np.array(e[:e.index(-1)], np.int32),
                   targets=np.array(e[e.index(-1) + 1:], np.int32)) for e in _examples(packed)]
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature={
          "inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32)})
  unpacked = next(seqio.EncDecFeatureConverter(pack=False)(
      dataset, {"inputs": 16, "targets": 8}).batch(len(examples)).as_numpy_iterator())
  model = Seq2Seq(TINY)
  params = model.init(jax.random.key(0), **model_inputs(packed))["params"]

  def nll(batch):
    logits = model.apply({"params": params}, **model_inputs(batch), deterministic=True)
    return loss_fn(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])

  (packed_sum, packed_count), (plain_sum, plain_count) = nll(packed), nll(unpacked)
  assert float(packed_count) == float(plain_count) == sum(len(e["targets"]) for e in examples)
  np.testing.assert_allclose(float(packed_sum), float(plain_sum), rtol=1e-5)


def test_decoder_inputs_are_the_targets_shifted_within_each_segment_as_seqio_does():
  rng = np.random.default_rng(0)
  segments = np.zeros((3, 20), np.int32)
  for row in segments:
    ends = np.cumsum(rng.integers(1, 6, 4))
    for segment, (start, end) in enumerate(zip([0, *ends[:-1]], ends), 1):
      row[start:min(end, 16)] = segment  # Segments 1..4, then padding.
  targets = np.where(segments > 0, rng.integers(2, 50, (3, 20)), 0).astype(np.int32)
  features = input_pipeline.enc_dec_features({
      "inputs": targets, "inputs_segment_ids": segments, "inputs_positions": segments,
      "targets": targets, "targets_segment_ids": segments, "targets_positions": segments})
  for row in range(3):
    expected = seqio.utils.make_autoregressive_inputs(
        tf.constant(targets[row]), sequence_id=tf.constant(segments[row]))
    np.testing.assert_array_equal(features["decoder_input_tokens"][row], expected.numpy())


def test_a_row_shorter_than_the_cut_and_a_foreign_position_are_refused():
  store = synthetic_store()
  with pytest.raises(ValueError, match="packed inputs row of 12 tokens cannot hold an example "
                                       "of 16"):
    input_pipeline.TrainInput([(store, 1.0)], 8, {"inputs": 12, "targets": 24}, seed=0)
  saved = input_pipeline.TrainInput([(store, 1.0)], 8, ROWS, seed=0, input_shards=2).state()
  with pytest.raises(ValueError, match=r"for 2 input shards, this run reads 1 \(set "
                                       r"train.input_shards=2"):
    input_pipeline.TrainInput([(store, 1.0)], 8, ROWS, seed=0).restore(saved)


def test_the_store_holds_the_tasks_own_examples(chitchat_dir, tmp_path):
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
  task = seqio_tasks.get_task("chitchat", chitchat_dir)
  stored = token_store.tokenized(task, "validation", {"inputs": 32, "targets": 16},
                                 str(tmp_path), progress=False)
  store = stored.shard(0, 1)
  expected = list(task.get_dataset({"inputs": 32, "targets": 16}, split="validation",
                                   shuffle=False).as_numpy_iterator())
  assert len(store) == len(expected)
  for i in (0, 1, len(store) - 1):
    assert np.array_equal(store[i]["inputs"], expected[i]["inputs"])
    assert np.array_equal(store[i]["targets"], expected[i]["targets"])
  assert not list(tmp_path.glob("**/*.tmp"))
  assert token_store.tokenized(task, "validation", {"inputs": 32, "targets": 16},
                               str(tmp_path), progress=False).path == stored.path  # Reused.


def test_data_stats_prints_lengths_truncation_and_fill_and_names_a_bad_row_flag(
    chitchat_dir, capsys, tmp_path):
  flags = ["--gin_file=gin/runs/et_tiny_chitchat.gin", f"--gin.DATA_DIR={chitchat_dir}",
           "--gin.BATCH_SIZE=4", "--gin.INPUT_LENGTH=32", "--gin.TARGET_LENGTH=16",
           "--split=validation", "--batches=3", f"--json={tmp_path / 'stats.json'}"]
  gin.clear_config()
  commands.data_stats(flags + ["--rows=32/16,128/32"])
  printed = capsys.readouterr().out
  assert "chitchat/validation: per-example cut 32/16, 4 rows a batch" in printed
  figures = json.loads((tmp_path / "stats.json").read_text())
  assert figures["lengths"]["inputs"]["truncated"] > 0.5  # Most contexts exceed 32 tokens.
  one, four = figures["fill"]["32/16"], figures["fill"]["128/32"]
  assert one["examples_per_row"] < four["examples_per_row"] and four["target_fill"] > 0.5
  for rows, message in (("32x16", r"--rows=32x16: expected INPUTS/TARGETS"),
                        ("16/16", "--rows: a packed inputs row of 16 tokens cannot hold")):
    gin.clear_config()
    with pytest.raises(SystemExit, match=message):
      commands.data_stats(flags + [f"--rows={rows}"])
  gin.clear_config()
