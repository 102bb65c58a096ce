"""Pushshift-shaped Reddit dumps, generated deterministically from a seed: for tests and benches.

  python -m meena_tasks.synthetic_pushshift --comments 1000000 --out /tmp/dumps --seed 0
  # -> /tmp/dumps/RS_2019-01.zst (submissions) and /tmp/dumps/RC_2019-01.zst (comments)

What real dumps hold and Meena's filters meet, in roughly Reddit's proportions: submissions with
heavy-tailed comment counts (most threads small, a few with thousands), trees both deep (reply
chains of dozens) and wide (hundreds of top-level comments); ``[deleted]`` and ``[removed]``
bodies; bot authors (AutoModerator, *bot); URLs; messages repeated hundreds of times ("lol",
"This."); insults; replies quoting their parent (``>``), some with nothing else; HTML entities;
non-ASCII text (accents, CJK, emoji); the same record twice (dumps re-ingest some); comments
whose parent is missing from the dump. Records carry Pushshift's fields (``id``, ``parent_id``, ``link_id``, ``author``, ``body``,
``created_utc``, ``subreddit``, ``score``; submissions ``title`` and ``selftext``) and are
written in time order, threads interleaved, through a streaming zstandard writer: memory holds
one chunk of threads, not the dump.
"""
import argparse
import json
import os
import random
from typing import Iterator

WORDS = ("the a to and of I you it that is in for this was on with my but have be not are "
         "just like so if your what they can all do think people would about one get out "
         "more when time really know how good because no there some from me or will even "
         "why only much game well make first thing way now also which still see then who "
         "want same other right been better years sure pretty than could actually world "
         "work lot play season team city book music movie food car house school friend "
         "water money night story idea question answer history science long little new "
         "old great bad best worst funny true wrong agree never always maybe probably").split()
NON_ASCII = ("café", "naïve", "über", "señor", "日本語", "東京", "привет", "🙂", "😂", "👍", "—",
             "façade", "Zürich", "São Paulo", "crème brûlée")
FREQUENT = ("lol", "This.", "Thank you!", "Same here", "Agreed.", "What?", "Yes", "No",
            "Source?", "Wow", "Nice", "Exactly this")
INSULTS = ("shut the fuck up you idiot", "what a stupid fucking take", "you are a complete moron",
           "fuck off with this shit", "holy shit you are dumb")
BOTS = ("AutoModerator", "RemindMeBot", "WikiTextBot", "sneakpeekbot", "converter-bot")
SUBREDDITS = ("AskReddit", "books", "movies", "soccer", "science", "cooking", "travel",
              "worldnews", "gaming", "music")
MONTH_START = 1546300800  # 2019-01-01T00:00:00Z.


def _base36(n: int) -> str:
  digits = "0123456789abcdefghijklmnopqrstuvwxyz"
  out = ""
  while True:
    n, r = divmod(n, 36)
    out = digits[r] + out
    if not n:
      return out


SYLLABLES = ("ka ri mo te lu sa ne vi do pa ro mi tu be ga lo fe si nu ha za ki re mu to la "
             "de po ja wi").split()
# A Zipf-tailed lexicon of 30,000 invented words beside the common ones: enough variety for
# an 8K-piece vocabulary, as Reddit's text has.
LEXICON = ["".join(random.Random(i).choices(SYLLABLES, k=2 + i % 3)) for i in range(30_000)]


def _word(rng: random.Random) -> str:
  if rng.random() < 0.7:
    return rng.choice(WORDS)
  return LEXICON[min(int(rng.paretovariate(0.8)) - 1, len(LEXICON) - 1)]


def _sentence(rng: random.Random, low: int = 3, high: int = 30) -> str:
  words = [_word(rng) for _ in range(rng.randint(low, high))]
  if rng.random() < 0.05:
    words.insert(rng.randrange(len(words)), rng.choice(NON_ASCII))
  text = " ".join(words)
  return text[0].upper() + text[1:] + rng.choice((".", "!", "?", "", "..."))


def _body(rng: random.Random, parent_text: str) -> tuple[str, str]:
  """(body, author) of one comment."""
  roll = rng.random()
  author = f"user_{rng.randrange(200_000)}"
  if roll < 0.04:
    return "[deleted]", "[deleted]"
  if roll < 0.06:
    return "[removed]", "[deleted]"
  if roll < 0.07:
    return (f"Your post was removed. Please read the rules at "
            f"https://www.reddit.com/r/{rng.choice(SUBREDDITS)}/wiki/rules", rng.choice(BOTS))
  if roll < 0.08:
    return f"I will be messaging you in {rng.randint(2, 9)} days to remind you of this "\
           f"comment", rng.choice(BOTS)
  if roll < 0.12:  # Zipf-weighted: "lol" alone is about 1% of all comments.
    return FREQUENT[min(int(rng.paretovariate(1.0)) - 1, len(FREQUENT) - 1)], author
  if roll < 0.125:
    return rng.choice(INSULTS), author
  if roll < 0.13 and parent_text:
    return f"> {parent_text}", author  # Nothing but the quote: empty once it is stripped.
  if roll < 0.14:
    return f"{_sentence(rng)} see https://example.com/{rng.randrange(10**6)}", author
  if roll < 0.17 and parent_text:
    return f"> {parent_text[:80]}\n\n{_sentence(rng)}", author
  if roll < 0.19:
    return f"{_sentence(rng)} &amp; {_sentence(rng, 2, 8)} &gt; {rng.randint(1, 99)}", author
  if roll < 0.20:
    return " ".join(rng.choice(NON_ASCII) for _ in range(rng.randint(2, 6))), author
  text = " ".join(_sentence(rng) for _ in range(1 + int(rng.paretovariate(2.5)) % 6))
  return text, author


def _thread_size(rng: random.Random) -> int:
  """Comments of one submission: most threads a few, a heavy tail to thousands."""
  return min(int(rng.paretovariate(1.1)) - 1, 5000)


def generate(comments: int, seed: int = 0) -> Iterator[tuple[str, dict]]:
  """``("submission" | "comment", record)`` until ``comments`` comments have been made, in
  chunks of threads interleaved by time (each chunk's records in time order)."""
  rng = random.Random(seed)
  made, submission, comment_id = 0, 0, 0
  chunk_start = MONTH_START
  while made < comments:
    chunk = []
    for _ in range(200):
      if made >= comments:
        break
      submission += 1
      link = f"t3_{_base36(submission + 36 ** 5)}"
      created = chunk_start + rng.randrange(3600)
      title = _sentence(rng, 4, 14)
      record = {"id": link[3:], "title": title, "selftext": "" if rng.random() < 0.7 else
                _sentence(rng), "author": f"user_{rng.randrange(200_000)}",
                "created_utc": created, "subreddit": rng.choice(SUBREDDITS),
                "num_comments": 0}
      chunk.append((created, "submission", record))
      thread = [(link, title, created)]  # (fullname, text, time) of every node so far.
      for _ in range(min(_thread_size(rng), comments - made)):
        # Half the replies go to recent nodes (deep chains), the rest anywhere (wide trees).
        if rng.random() < 0.5:
          parent = thread[max(0, len(thread) - 1 - int(rng.expovariate(0.7)))]
        else:
          parent = thread[rng.randrange(len(thread))]
        comment_id += 1
        fullname = f"t1_{_base36(comment_id + 36 ** 6)}"
        created_at = parent[2] + 1 + int(rng.expovariate(1 / 600))
        body, author = _body(rng, parent[1])
        parent_id = parent[0]
        if rng.random() < 0.005 and parent_id.startswith("t1_"):
          parent_id = f"t1_{_base36(10 ** 12 + rng.randrange(10 ** 6))}"  # Not in the dump.
        record = {"id": fullname[3:], "parent_id": parent_id, "link_id": link,
                  "author": author, "body": body, "created_utc": created_at,
                  "subreddit": chunk[-1][2]["subreddit"] if chunk[-1][1] == "submission"
                  else rng.choice(SUBREDDITS), "score": int(rng.paretovariate(1.5))}
        chunk.append((created_at, "comment", record))
        if rng.random() < 0.003:
          chunk.append((created_at, "comment", dict(record)))  # Ingested twice.
        thread.append((fullname, body, created_at))
        made += 1
    chunk.sort(key=lambda item: item[0])
    yield from ((kind, record) for _, kind, record in chunk)
    chunk_start += 3600


def write_dumps(directory: str, comments: int, seed: int = 0, month: str = "2019-01") -> tuple:
  """Writes ``RS_<month>.zst`` and ``RC_<month>.zst`` under ``directory``; returns their paths
  and the number of comment records written (duplicates included)."""
  import zstandard  # pylint: disable=import-outside-toplevel
  os.makedirs(directory, exist_ok=True)
  paths = {kind: os.path.join(directory, f"{prefix}_{month}.zst")
           for kind, prefix in (("submission", "RS"), ("comment", "RC"))}
  counts = {"submission": 0, "comment": 0}
  compressor = zstandard.ZstdCompressor(level=3)
  with open(paths["submission"], "wb") as rs, open(paths["comment"], "wb") as rc:
    writers = {"submission": compressor.stream_writer(rs), "comment":
               zstandard.ZstdCompressor(level=3).stream_writer(rc)}
    for kind, record in generate(comments, seed):
      writers[kind].write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
      counts[kind] += 1
    for writer in writers.values():
      writer.flush(zstandard.FLUSH_FRAME)
  return paths["comment"], paths["submission"], counts["comment"]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--comments", type=int, default=100_000)
  parser.add_argument("--out", required=True, help="directory for RC_/RS_<month>.zst")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--month", default="2019-01")
  args = parser.parse_args(argv)
  comments, submissions, written = write_dumps(args.out, args.comments, args.seed, args.month)
  print(f"wrote {written:,} comment records to {comments} and their submissions to "
        f"{submissions}")


if __name__ == "__main__":
  main()
