"""The path layer and the token store on Cloud Storage, against the emulator
(``tests/gcs_emulator.py``): a missing bucket, a 403 and a missing path are one line naming the
setting; transient 503s and 429s are retried; a host reads only its own examples of a gs://
store, and they are the local store's examples."""
import re
import uuid

import numpy as np
import pytest

from meena_jax import checkpoints, input_pipeline, storage, token_store

ROWS = {"inputs": 48, "targets": 24}


@pytest.fixture
def bucket(gcs, request):
  """A fresh bucket for one test; its injected faults end with it."""
  name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
  name = f"{name}-{uuid.uuid4().hex[:6]}"
  gcs.create_bucket(name)
  yield name
  gcs.clear_faults()


def test_a_writable_gcs_dir_is_probed_and_the_probe_deleted(gcs, bucket):
  directory = storage.writable_dir(f"gs://{bucket}/run", "MODEL_DIR")
  assert str(directory) == f"gs://{bucket}/run"
  assert gcs.objects(bucket) == {}


def test_a_missing_bucket_a_403_and_a_missing_path_are_one_line_naming_the_setting(
    gcs, bucket, tmp_path):
  with pytest.raises(storage.StorageError) as error:
    storage.writable_dir("gs://no-such-bucket-meena/run", "MODEL_DIR")
  assert str(error.value) == (
      "MODEL_DIR=gs://no-such-bucket-meena/run: bucket gs://no-such-bucket-meena does not "
      "exist (create it: gcloud storage buckets create gs://no-such-bucket-meena "
      "--location=REGION)")
  gcs.fail(rf"/{bucket}\b", 403, 1000)
  with pytest.raises(storage.StorageError) as error:
    storage.writable_dir(f"gs://{bucket}/run", "MODEL_DIR")
  assert str(error.value) == (f"MODEL_DIR=gs://{bucket}/run: bucket gs://{bucket}: permission "
                              f"denied (HTTP 403): the credentials may not use it")
  gcs.clear_faults()
  with pytest.raises(storage.StorageError) as error:
    checkpoints.require(f"gs://{bucket}/no/run")
  assert str(error.value) == (f"CHECKPOINT=gs://{bucket}/no/run: no such checkpoint or run "
                              f"directory")
  gcs.write(bucket, "empty/metrics.jsonl", b"")
  with pytest.raises(storage.StorageError) as error:
    checkpoints.require(f"gs://{bucket}/empty", "train.init_checkpoint")
  assert str(error.value) == (f"train.init_checkpoint=gs://{bucket}/empty: no complete "
                              f"checkpoint in it (no checkpoints/<step>/state directory)")
  with pytest.raises(storage.StorageError, match=f"CHECKPOINT={tmp_path}/none: no such "):
    checkpoints.require(tmp_path / "none")


def test_transient_503s_and_429s_are_retried_with_backoff(gcs, bucket):
  gcs.fail(rf"^POST /upload/storage/v1/b/{bucket}/", 503, 2)
  storage.write_text(f"gs://{bucket}/a.txt", "written through two 503s")
  gcs.fail(rf"^GET /{bucket}/a\.txt", 429, 1)
  assert storage.path(f"gs://{bucket}/a.txt").read_text() == "written through two 503s"
  assert [f["seen"] for f in gcs.faults()] == [2, 1]


def synthetic_examples(n: int, seed: int = 0) -> list:
  rng = np.random.default_rng(seed)
  return [{"inputs": rng.integers(2, 61, rng.integers(1, 17)).astype(np.int32),
           "targets": rng.integers(2, 61, rng.integers(1, 9)).astype(np.int32)}
          for _ in range(n)]


def assert_same_examples(a, b):
  assert len(a) == len(b)
  for i in range(len(a)):
    assert all(np.array_equal(a[i][f], b[i][f]) for f in token_store.FEATURES), i


def test_each_host_reads_only_its_own_examples_of_a_gcs_store(gcs, bucket, tmp_path):
  examples = synthetic_examples(400)
  local = token_store.write(str(tmp_path / "store"), examples, file_bytes=3000)
  remote = token_store.write(f"gs://{bucket}/store", examples, file_bytes=3000)
  assert len(remote.meta["files"]) >= 4 and remote.meta == local.meta
  stored = sum(gcs.objects(bucket, "store/").values())
  assert token_store.open_store(f"gs://{bucket}/store").meta == remote.meta
  hosts = 4
  for host in range(hosts):
    gcs.reset_counts()
    mine = remote.shard(host, hosts)
    read = gcs.stats()["bytes_read"]["tests"]
    assert_same_examples(mine, local.shard(host, hosts))
    start, stop = token_store.shard_bounds(len(examples), host, hosts)
    assert_same_examples(mine, [examples[i] for i in range(start, stop)])
    assert read <= stored / hosts * 1.05, (host, read, stored)
  # The trainer's batches from the gs:// store are the local store's.
  from_gcs = input_pipeline.TrainInput([(remote, 1.0)], 8, ROWS, seed=1, input_shards=2)
  from_disk = input_pipeline.TrainInput([(local, 1.0)], 8, ROWS, seed=1, input_shards=2)
  for _ in range(3):
    a, b = next(from_gcs), next(from_disk)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_gcs_store_read_through_503s_and_one_with_a_bad_file_says_which(gcs, bucket):
  remote = token_store.write(f"gs://{bucket}/store", synthetic_examples(50))
  gcs.fail(rf"GET /storage/v1/b/{bucket}/o/store%2Ftargets\.tokens", 503, 2)
  assert len(remote.shard(0, 1)) == 50
  assert gcs.faults()[0]["seen"] == 2
  data = gcs.read(bucket, "store/targets.tokens-00000.npy")
  gcs.write(bucket, "store/targets.tokens-00000.npy", data[:len(data) // 2])
  with pytest.raises(storage.StorageError, match=rf"gs://{bucket}/store/targets.tokens-00000"
                                                 r"\.npy: OUT_OF_RANGE: .* \(a truncated or "
                                                 r"unreadable file\)"):
    remote.shard(0, 1)
  gcs.delete(bucket, "store/targets.tokens-00000.npy")
  with pytest.raises(storage.StorageError, match=rf"gs://{bucket}/store/targets.tokens-00000"
                                                 r"\.npy: missing \(the store is incomplete"):
    remote.shard(0, 1)
  gcs.delete(bucket, "store/meta.json")
  assert token_store.open_store(f"gs://{bucket}/store") is None  # Incomplete: built again.
