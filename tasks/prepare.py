"""Prepares a task's TFDS data and vocabulary ahead of training, and says what the filters kept.

  python -m meena_tasks.prepare chitchat --data_dir ~/tensorflow_datasets
  python -m meena_tasks.prepare reddit2015 --data_dir ~/tensorflow_datasets          # downloads
  python -m meena_tasks.prepare reddit2015 --reddit2015_dir ../shared/data/reddit2015
  python -m meena_tasks.prepare pushshift_reddit --comment_files RC_2015-01.zst RC_2015-02.zst \\
      [--submission_files RS_2015-01.zst ...] [--vocab_file DIR/meena_vocab/reddit2015_8000.model]

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
  args = parser.parse_args(argv)
  builder = builder_for(args)
  if builder.is_prepared():
    print(f"{builder.name} is already prepared in {builder.data_dir}")
  else:
    try:
      seqio_tasks.prepare(builder, args.task)
    except (sources.DataError, FileNotFoundError) as error:
      raise SystemExit(f"error: {str(error).splitlines()[0]}") from None
  print(summary(builder))


if __name__ == "__main__":
  sys.exit(main())
