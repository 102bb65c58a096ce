"""Bytes each host reads, and seconds from its start to its first batch, when N hosts train
from one token store on Cloud Storage, against the same store on local disk.

  python bench/token_store_hosts.py --examples 1000000 --hosts 4 \\
      --jsonl bench/results/2026-12-08-token-store-hosts.jsonl

The hosts are N processes joined by ``jax.distributed`` on 127.0.0.1 (``launch/local.py``);
each builds the trainer's input (``input_pipeline.TrainInput``: its own input shard, packed
rows of 512/128, 16 rows a host) and takes one batch. Cloud Storage is the tests' emulator
(``tests/gcs_emulator.py``: fake-gcs-server behind a proxy that counts the response bytes each
host is sent), so ``bytes_read`` is what crossed the wire, headers excluded. The store holds
``--examples`` synthetic examples with chitchat-like lengths (contexts up to 128 tokens, mean
~60; responses mean ~20) in files of ``--file_mb``. The goal: each host reads at most
``1/N`` of the store plus 5%.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # pylint: disable=wrong-import-position

ROWS = {"inputs": 512, "targets": 128}
ROWS_PER_HOST = 16


def synthetic_examples(n: int, seed: int = 0):
  """``n`` examples whose token counts follow a clipped log-normal (chitchat-like)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  inputs = np.clip(rng.lognormal(3.9, 0.6, n), 1, 128).astype(np.int64)
  targets = np.clip(rng.lognormal(2.8, 0.6, n), 1, 127).astype(np.int64) + 1
  tokens = rng.integers(2, 8000, int(inputs.sum() + targets.sum())).astype(np.int32)
  at = 0
  for i, t in zip(inputs, targets):
    yield {"inputs": tokens[at:at + i], "targets": tokens[at + i:at + i + t]}
    at += i + t


def child(args):
  """One host: its environment tagged for the emulator's byte count, then its first batch."""
  import psutil  # pylint: disable=import-outside-toplevel
  started = psutil.Process().create_time()
  tagged = json.loads(os.environ.get("BENCH_GCS_ENV", "{}"))
  os.environ.update({k: v.replace("HOST", f"host{args.process_id}") for k, v in tagged.items()})
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
  from meena_jax import input_pipeline, token_store  # pylint: disable=import-outside-toplevel
  store = token_store.open_store(args.child)
  batches = input_pipeline.TrainInput([(store, 1.0)], ROWS_PER_HOST * args.num_processes, ROWS,
                                      seed=0)
  batch = next(batches)
  print(json.dumps({"host": args.process_id, "seconds": time.time() - started,
                    "rows": int(batch["decoder_target_tokens"].shape[0]),
                    "rss_mib": _peak_rss_mib()}), flush=True)


def _peak_rss_mib() -> float:
  """This process's high-water RSS since its exec (``VmHWM``; ``ru_maxrss`` would carry the
  parent's across the fork)."""
  with open("/proc/self/status", encoding="ascii") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def run_hosts(store_path: str, hosts: int, env: dict) -> dict:
  """host -> its printed record, from ``hosts`` processes reading ``store_path``."""
  from launch import local  # pylint: disable=import-outside-toplevel
  with tempfile.NamedTemporaryFile("w+", suffix=".log") as sink:
    code = local.run_local([sys.executable, __file__, f"--child={store_path}"], hosts, 1,
                           env=env, sink=sink, timeout=1800)
    sink.seek(0)
    text = sink.read()
  if code:
    raise SystemExit(f"the hosts failed (exit {code}):\n{text[-3000:]}")
  found = {}
  for line in text.splitlines():
    match = re.match(r"^\[p(\d+)\] (\{.*\"host\".*\})$", line)
    if match:
      found[int(match[1])] = json.loads(match[2])
  return found


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--examples", type=int, default=1_000_000)
  parser.add_argument("--hosts", type=int, default=4)
  parser.add_argument("--file_mb", type=int, default=64)
  parser.add_argument("--jsonl")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--coordinator_address", help=argparse.SUPPRESS)
  parser.add_argument("--num_processes", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--process_id", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return child(args)

  from tests import gcs_emulator  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as scratch, gcs_emulator.GcsEmulator(
      os.path.join(scratch, "gcs")) as gcs:
    gcs.create_bucket("bench")
    gcs.apply("writer")
    from meena_jax import token_store  # pylint: disable=import-outside-toplevel
    stores = {"local": os.path.join(scratch, "store"), "gcs": "gs://bench/store"}
    for where, path in stores.items():
      started = time.perf_counter()
      store = token_store.write(path, synthetic_examples(args.examples), args.file_mb << 20)
      print(f"{where}: wrote {len(store):,} examples in {len(store.meta['files'])} files in "
            f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    store_bytes = sum(gcs.objects("bench", "store/").values())
    config = {"examples": args.examples, "hosts": args.hosts, "files": len(store.meta["files"]),
              "store_bytes": store_bytes, "rows_per_host": ROWS_PER_HOST, "rows": ROWS}
    base = {k: v for k, v in os.environ.items() if k not in gcs.env()}
    for where, path in stores.items():
      gcs.reset_counts()
      env = dict(base, BENCH_GCS_ENV=json.dumps(gcs.env("HOST")) if where == "gcs" else "{}",
                 PYTHONPATH=ROOT)
      found = run_hosts(path, args.hosts, env)
      read = gcs.stats()["bytes_read"]
      for host in range(args.hosts):
        results = {"seconds_to_first_batch": found[host]["seconds"],
                   "peak_rss_mib": found[host]["rss_mib"]}
        line = f"{where} host {host}: first batch after {found[host]['seconds']:.1f} s"
        if where == "gcs":  # A local store is memory-mapped: pages, not a byte count.
          got = read.get(f"host{host}", 0)
          results.update(bytes_read=got, fraction_of_store=got / store_bytes)
          line += (f", read {got / 2**20:.1f} MiB = {got / store_bytes:.2%} of the store's "
                   f"{store_bytes / 2**20:.1f} MiB")
        common.emit("token_store_hosts", f"{where}:host{host}", config, results, args.jsonl)
        print(line + f", peak RSS {found[host]['rss_mib']:.0f} MiB", file=sys.stderr)
  return None


if __name__ == "__main__":
  main()
