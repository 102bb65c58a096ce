"""Tokens/s of the packed training stream a SeqIO task feeds the trainer.

  python bench/data_pipeline.py --task chitchat --data_dir ~/tensorflow_datasets
  python bench/data_pipeline.py --task reddit2015 --batches 300 --jsonl results.jsonl

The builder is prepared first (untimed); then the real training path runs: shuffled task ->
``EncDecFeatureConverter(pack=True)`` -> batches of ``--batch`` rows, iterated as numpy. The
first batch (pipeline start-up) is timed separately; throughput counts the following batches.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", default="chitchat")
  parser.add_argument("--data_dir", default="~/tensorflow_datasets")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--inputs", type=int, default=128)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--batches", type=int, default=200, help="timed batches after the first")
  parser.add_argument("--jsonl", help="append the record to this file")
  args = parser.parse_args(argv)

  import seqio
  from meena_tasks import seqio_tasks
  start = time.perf_counter()
  task = seqio_tasks.get_task(args.task, os.path.expanduser(args.data_dir))
  prepare_s = time.perf_counter() - start

  lengths = {"inputs": args.inputs, "targets": args.targets}
  start = time.perf_counter()
  dataset = task.get_dataset(lengths, split="train", shuffle=True, seed=0)
  batches = seqio.EncDecFeatureConverter(pack=True)(dataset, lengths).repeat().batch(
      args.batch).as_numpy_iterator()
  next(batches)
  first_batch_s = time.perf_counter() - start

  target_tokens = total_tokens = rows = 0
  start = time.perf_counter()
  for _ in range(args.batches):
    batch = next(batches)
    target_tokens += int((batch["decoder_target_tokens"] > 0).sum())
    total_tokens += int((batch["encoder_input_tokens"] > 0).sum()) + int(
        (batch["decoder_target_tokens"] > 0).sum())
    rows += int((batch["decoder_segment_ids"].max(axis=1) if "decoder_segment_ids" in batch
                 else 1).sum())
  seconds = time.perf_counter() - start
  results = {
      "prepare_or_check_s": prepare_s, "first_batch_s": first_batch_s, "timed_s": seconds,
      "batches": args.batches, "examples_per_s": rows / seconds,
      "target_tokens_per_s": target_tokens / seconds,
      "total_tokens_per_s": total_tokens / seconds,
      "target_fill": target_tokens / (args.batches * args.batch * args.targets),
      "tokens_per_s_basis": "non-padding tokens of packed batches after the first",
      "peak_rss_mib": common.peak_rss_mib()}
  common.emit("data", args.task, {"batch": args.batch, "ctx_len": args.inputs,
                                  "resp_len": args.targets, "threads": os.cpu_count()},
              results, args.jsonl)
  print(f"{args.task}: {results['target_tokens_per_s']:,.0f} target tokens/s, "
        f"{results['total_tokens_per_s']:,.0f} total tokens/s, "
        f"{results['examples_per_s']:,.0f} examples/s (first batch {first_batch_s:.1f}s, "
        f"target rows {results['target_fill']:.0%} full)", file=sys.stderr)


if __name__ == "__main__":
  main()
