"""Meena's message filters: one passing and one failing message per rule, cleaning, subtrees."""
import collections

import pytest

from meena_tasks import conversations, text_filters
from meena_tasks.conversations import FilterStatistics, Message


def test_entities_are_decoded_even_when_double_escaped():
  assert text_filters.decode_entities("Tom &amp; Jerry &amp;gt; cats &#39;ok&#39;") == (
      "Tom & Jerry > cats 'ok'")


def test_quote_lines_and_inline_quotes_of_the_parent_are_stripped():
  parent = "The movie was far too long for what it had to say."
  assert text_filters.strip_quotes("> The movie was far too long\nI disagree.") == "I disagree."
  # reddit2015 lost the line breaks: the quote runs into the reply.
  assert text_filters.clean_message(
      "&gt; The movie was far too long for what it had I disagree, it flew by.", parent) == (
          "I disagree, it flew by.")
  assert text_filters.clean_message("So 3 > 2 and that is fine.", parent) == (
      "So 3 > 2 and that is fine.")


def test_deleted_and_removed_messages_are_dropped():
  assert text_filters.clean_message("[deleted]") is None
  assert text_filters.clean_message(" [removed] ") is None
  assert text_filters.clean_message("[deleted] is what they wrote") is not None


@pytest.mark.parametrize("text, has_url", [
    ("see https://example.org/x for more", True), ("www.reddit.com is down", True),
    ("it is on youtube.com/watch today", True), ("I like dots... and commas, too.", False),
    ("version 2.0 is out", False)])
def test_url_filter(text, has_url):
  assert text_filters.has_url(text) is has_url


def test_bot_author_filter():
  assert text_filters.is_bot_author("AutoModeratorBot")
  assert text_filters.is_bot_author("robotics_fan")  # The paper's rule is a plain substring.
  assert not text_filters.is_bot_author("alice")
  assert not text_filters.is_bot_author(None)


def test_alphabetic_filter():
  assert not text_filters.too_few_alphabetic("A perfectly ordinary sentence, really.")
  assert text_filters.too_few_alphabetic("10/10 :) 100% <3 !!!")


def test_subword_count_filter():
  assert text_filters.bad_subword_count(1)
  assert not text_filters.bad_subword_count(2)
  assert not text_filters.bad_subword_count(128)
  assert text_filters.bad_subword_count(129)


def test_frequency_filter():
  assert not text_filters.too_frequent(100)
  assert text_filters.too_frequent(101)


def test_parent_overlap_filter():
  parent = "the quick brown fox jumps over the lazy dog"
  assert text_filters.overlaps_parent("the quick brown fox jumps over the cat", parent)
  assert not text_filters.overlaps_parent("a fox? I saw no fox at all today", parent)
  assert not text_filters.overlaps_parent("the quick brown", None)


def test_offensive_filter():
  probabilities = text_filters.offensive_probabilities(
      ["What a lovely afternoon for a walk in the park.", "you are a fucking idiot, shut up"])
  assert list(text_filters.is_offensive(probabilities)) == [False, True]


def run_filters(messages, subwords=lambda texts: [len(t.split()) for t in texts]):
  stats = FilterStatistics()
  cleaned = conversations.clean_messages(messages)
  survivors = conversations.filter_messages(
      messages, cleaned, subwords, conversations.text_occurrences(cleaned), stats)
  return survivors, stats


def test_a_removed_message_takes_its_whole_subtree():
  # root -> a (has a URL) -> a1 -> a2 ; root -> b -> b1
  tree = [Message("root", None, "Where should we go for dinner tonight?"),
          Message("a", "root", "Try www.example.com for ideas"),
          Message("a1", "a", "That website looks great, thanks a lot"),
          Message("a2", "a1", "You are welcome, enjoy your meal"),
          Message("b", "root", "The noodle place on the corner is good"),
          Message("b1", "b", "Oh yes, I love their spicy noodles")]
  survivors, stats = run_filters(tree)
  assert [m.id for m in survivors] == ["root", "b", "b1"]
  assert stats.removed["url"] == 1 and stats.removed_with_parent == 2
  assert (stats.messages_in, stats.messages_out) == (6, 3)


def test_statistics_count_each_reason_once_and_frequent_texts_go():
  repeated = [Message(f"r{i}", None, "thank you so much") for i in range(101)]
  lone = [Message("x", None, "Hello there, how are you doing?"),
          Message("y", "x", "Fine"),  # One subword under the whitespace counter: removed.
          Message("z", "y", "and you?")]  # Removed with its parent.
  survivors, stats = run_filters(repeated + lone)
  assert [m.id for m in survivors] == ["x"]
  assert stats.removed == collections.Counter(frequent=101, subword_count=1)
  assert stats.removed_with_parent == 1


def test_examples_keep_at_most_seven_previous_turns_oldest_first():
  chain = conversations.chain("c", [f"turn number {i} is here" for i in range(10)],
                              ["A", "B"] * 5)
  stats = FilterStatistics()
  examples = conversations.make_examples(chain, stats)
  assert len(examples) == 9 and stats.examples_out == 9 and stats.conversations_out == 1
  first, last = examples[0], examples[-1]
  assert first.context == ("turn number 0 is here",)
  assert first.response == "turn number 1 is here" and first.response_speaker == "B"
  assert last.context == tuple(f"turn number {i} is here" for i in range(2, 9))
  assert last.context_speakers == ("A", "B", "A", "B", "A", "B", "A")
