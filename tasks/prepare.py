"""Prepares a task's TFDS data and vocabulary ahead of training, and says what the filters kept.

  python -m meena_tasks.prepare chitchat --data_dir ~/tensorflow_datasets
  python -m meena_tasks.prepare reddit2015 --data_dir ~/tensorflow_datasets          # downloads
  python -m meena_tasks.prepare reddit2015 --reddit2015_dir ../shared/data/reddit2015
  python -m meena_tasks.prepare pushshift_reddit --comment_files RC_2015-01.zst RC_2015-02.zst \\
      [--submission_files RS_2015-01.zst ...] [--vocab_file DIR/meena_vocab/reddit2015_8000.model]
      [--beam_pipeline_options=--direct_num_workers=2,--direct_running_mode=multi_processing]

Pushshift is prepared by an Apache Beam pipeline (``pip install 'meena_jax[beam]'``): on the
DirectRunner without ``--beam_pipeline_options``, on Dataflow with
``--beam_pipeline_options=--runner=DataflowRunner,--project=P,--region=R,--temp_location=gs://B/tmp,...``
(comma-separated, as ``tfds build`` takes them; ``--data_dir`` and the dumps must then be
``gs://`` paths the workers can read).

The trainer prepares a missing task itself on first use (and logs that it does); running this
first keeps a pod's hosts from waiting on it, and shows the statistics before any training.
Pushshift dumps are prepared under the config name ``default``: one set of dumps per data_dir.
"""
import argparse
import os
import sys

from meena_tasks import builders, seqio_tasks, sources


def builder_for(args) -> builders._ConversationBuilder:  # pylint: disable=protected-access
  """The task's TFDS builder with the sources and vocabulary the flags name."""
  kwargs = {"data_dir": os.path.expanduser(args.data_dir), "skip_malformed": args.skip_malformed}
  if args.vocab_sample_size:
    kwargs["vocab_sample_size"] = args.vocab_sample_size
  if args.vocab_size:
    kwargs["vocab_size"] = args.vocab_size
  if args.vocab_file:
    kwargs["vocab_file"] = args.vocab_file
  if args.task == "reddit2015":
    kwargs["source_dir"] = args.reddit2015_dir
  elif args.task == "pushshift_reddit":
    if not args.comment_files:
      raise SystemExit("error: pushshift_reddit needs --comment_files RC_YYYY-MM.zst ... "
                       "(see the README's Data section for where the dumps come from)")
    kwargs.update(comment_files=args.comment_files, submission_files=args.submission_files or ())
  return seqio_tasks.SOURCES[args.task](**kwargs)


def _beam_options(text):
  """``--beam_pipeline_options`` as ``PipelineOptions`` (None: Beam's defaults)."""
  if not text:
    return None
  try:
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
  except ModuleNotFoundError:
    raise SystemExit("error: --beam_pipeline_options needs Apache Beam: pip install "
                     "'meena_jax[beam]'") from None
  return PipelineOptions([flag for flag in text.split(",") if flag])


def summary(builder) -> str:
  """One line per split: messages in and out, examples, and the largest removal reasons."""
  lines = [f"{builder.name} prepared in {builder.data_dir} (vocabulary {builder.vocab_file})"]
  for split, s in builders.statistics(builder).items():
    top = sorted(((n, reason) for reason, n in s["removed"].items() if n), reverse=True)[:3]
    lines.append(f"  {split}: {s['messages_in']:,} messages in, {s['messages_out']:,} out, "
                 f"{s['examples_out']:,} examples; removed most for "
                 + (", ".join(f"{reason} {n:,}" for n, reason in top) or "nothing")
                 + f", {s['removed_with_parent']:,} with their parent")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.splitlines()[1:]))
  parser.add_argument("task", choices=sorted(seqio_tasks.SOURCES))
  parser.add_argument("--data_dir", default=seqio_tasks.DEFAULT_DATA_DIR)
  parser.add_argument("--reddit2015_dir", help="reddit2015: a local directory with "
                      "train.jsonl.gz and validation.jsonl.gz instead of the download")
  parser.add_argument("--comment_files", nargs="+", help="pushshift_reddit: RC_*.zst dumps")
  parser.add_argument("--submission_files", nargs="+",
                      help="pushshift_reddit: RS_*.zst dumps (titles become tree roots)")
  parser.add_argument("--vocab_file", help="count subwords with this SentencePiece model "
                      "(e.g. reddit2015's, to mix the two) instead of training the source's own")
  parser.add_argument("--skip_malformed", action="store_true",
                      help="count and skip unreadable records instead of stopping at the first")
  parser.add_argument("--vocab_size", type=int,
                      help="pieces of the vocabulary trained when none exists (default: "
                           "8000; chitchat 4000)")
  parser.add_argument("--vocab_sample_size", type=int,
                      help="distinct train texts the vocabulary trains on (a deterministic "
                           "sample; default 1,000,000)")
  parser.add_argument("--beam_pipeline_options",
                      help="pushshift_reddit: Apache Beam pipeline options, comma-separated")
  args = parser.parse_args(argv)
  if args.beam_pipeline_options and args.task != "pushshift_reddit":
    raise SystemExit(f"--beam_pipeline_options: {args.task} is prepared in one process; only "
                     f"pushshift_reddit runs on Beam")
  builder = builder_for(args)
  if builder.is_prepared():
    print(f"{builder.name} is already prepared in {builder.data_dir}")
  else:
    try:
      seqio_tasks.prepare(builder, args.task, _beam_options(args.beam_pipeline_options))
    except (sources.DataError, FileNotFoundError) as error:
      raise SystemExit(f"error: {str(error).splitlines()[0]}") from None
  print(summary(builder))


if __name__ == "__main__":
  sys.exit(main())
