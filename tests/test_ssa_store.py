"""SSA store: five distinct raters per item, never twice to one rater, labels written once."""
import collections

import pytest

from meena_jax.ssa import importers, store

LEASE = 3600.0


def _items(n, system="meena"):
  return [importers.Item(key=f"k{i}", system=system, context=(f"context {i}",),
                         response=f"response {i}", cluster=f"k{i}", source=f"t:{i}")
          for i in range(n)]


@pytest.fixture
def conn(tmp_path):
  return store.connect(str(tmp_path / "r.sqlite"))


def _label_all(conn, rater_id, now=0.0):
  """Labels everything the rater is given; returns the item responses seen, in order."""
  seen = []
  while (row := store.next_assignment(conn, rater_id, now, LEASE)) is not None:
    seen.append(row["response"])
    assert store.answer(conn, rater_id, row["id"], True, False, now) == "saved"
  return seen


def test_schema_is_wal(conn):
  assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_item_goes_to_five_distinct_raters_once(conn):
  store.add_items(conn, _items(3))
  raters = [conn.execute("SELECT id FROM raters WHERE token = ?",
                         (store.add_rater(conn, f"r{i}"),)).fetchone()[0] for i in range(7)]
  seen = {r: _label_all(conn, r) for r in raters}
  # The first five raters get every item; the sixth and seventh find nothing left.
  assert [len(seen[r]) for r in raters] == [3, 3, 3, 3, 3, 0, 0]
  for r in raters:
    assert len(set(seen[r])) == len(seen[r])  # never the same item twice
  per_item = collections.Counter(row["item_id"] for row in store.label_rows(conn))
  assert sorted(per_item.values()) == [5, 5, 5]
  pairs = conn.execute("SELECT item_id, rater_id FROM assignments").fetchall()
  assert len(pairs) == len(set(map(tuple, pairs))) == 15


def test_open_assignment_comes_back_until_answered(conn):
  store.add_items(conn, _items(5))
  rater = store.rater_by_token(conn, store.add_rater(conn, "a"))["id"]
  first = store.next_assignment(conn, rater, 0.0, LEASE)
  # A reload or a second tab shows the same item rather than taking a new one.
  assert store.next_assignment(conn, rater, 1.0, LEASE)["id"] == first["id"]
  assert conn.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 1


def test_a_label_is_written_once(conn):
  store.add_items(conn, _items(2))
  rater = store.rater_by_token(conn, store.add_rater(conn, "a"))["id"]
  other = store.rater_by_token(conn, store.add_rater(conn, "b"))["id"]
  row = store.next_assignment(conn, rater, 0.0, LEASE)
  assert store.answer(conn, other, row["id"], True, True, 1.0) == "unknown"  # not theirs
  assert store.answer(conn, rater, row["id"], True, True, 1.0) == "saved"
  # Double submit, back button with another answer, a skip from a stale tab: first one stays.
  assert store.answer(conn, rater, row["id"], True, True, 2.0) == "already"
  assert store.answer(conn, rater, row["id"], False, None, 3.0) == "already"
  assert store.answer(conn, rater, row["id"], None, None, 4.0) == "already"
  labels = conn.execute("SELECT status, sensible, specific, answered FROM assignments").fetchall()
  assert [tuple(r) for r in labels] == [("labelled", 1, 1, 1.0)]
  with pytest.raises(ValueError, match="exactly when"):
    store.answer(conn, rater, row["id"], False, True, 5.0)
  with pytest.raises(ValueError, match="exactly when"):
    store.answer(conn, rater, row["id"], True, None, 5.0)


def test_skip_frees_the_slot_and_hides_the_item_from_that_rater(conn):
  store.add_items(conn, _items(1))
  raters = [store.rater_by_token(conn, store.add_rater(conn, f"r{i}"))["id"] for i in range(6)]
  row = store.next_assignment(conn, raters[0], 0.0, LEASE)
  assert store.answer(conn, raters[0], row["id"], None, None, 0.0) == "skipped"
  assert store.next_assignment(conn, raters[0], 0.0, LEASE) is None
  assert [len(_label_all(conn, r)) for r in raters[1:]] == [1, 1, 1, 1, 1]


def test_lease_expiry_reassigns_and_a_late_answer_is_kept_only_while_a_slot_is_free(conn):
  store.add_items(conn, _items(1))
  raters = [store.rater_by_token(conn, store.add_rater(conn, f"r{i}"))["id"] for i in range(7)]
  slow = store.next_assignment(conn, raters[0], 0.0, LEASE)
  late = store.next_assignment(conn, raters[1], 0.0, LEASE)
  for r in raters[2:5]:
    _label_all(conn, r, now=10.0)
  # After the lease, both open slots go back to the pool; one is taken by rater 5.
  assert _label_all(conn, raters[5], now=LEASE + 1) == ["response 0"]
  assert store.answer(conn, raters[1], late["id"], True, False, LEASE + 2) == "saved"
  assert store.answer(conn, raters[0], slow["id"], True, False, LEASE + 3) == "reassigned"
  assert _label_all(conn, raters[6], now=LEASE + 4) == []
  assert len(store.label_rows(conn)) == 5


def test_finished_conversation_becomes_interactive_items_rated_first_by_its_rater(conn):
  store.add_items(conn, _items(3))
  rater = store.rater_by_token(conn, store.add_rater(conn, "a"))["id"]
  conversation = store.start_conversation(conn, rater, "bot", ["Hi!", "Hello!"], 0.0)
  assert store.start_conversation(conn, rater, "bot", ["Hi!", "Again"], 0.0) == conversation
  assert store.add_exchange(conn, conversation, 2, "How are you?", "Fine.", max_turns=6)
  assert not store.add_exchange(conn, conversation, 2, "How are you?", "Fine.", max_turns=6)
  assert not store.finish_conversation(conn, conversation, rater, min_turns=6, now=1.0)
  assert store.add_exchange(conn, conversation, 4, "Bye", "Bye!", max_turns=6)
  assert not store.add_exchange(conn, conversation, 6, "More?", "No.", max_turns=6)
  assert store.finish_conversation(conn, conversation, rater, min_turns=6, now=1.0)
  assert not store.finish_conversation(conn, conversation, rater, min_turns=6, now=1.0)
  seen = _label_all(conn, rater, now=2.0)
  assert seen[:3] == ["Hello!", "Fine.", "Bye!"]  # its own bot turns first, in order
  rows = [r for r in store.label_rows(conn) if r["kind"] == "interactive"]
  assert [r["context"] for r in rows] == ['["Hi!"]', '["Hi!", "Hello!", "How are you?"]',
                                          '["Hi!", "Hello!", "How are you?", "Fine.", "Bye"]']
  assert {r["system"] for r in rows} == {"bot"}
  assert store.least_used_system(conn, ["bot", "other"]) == "other"
