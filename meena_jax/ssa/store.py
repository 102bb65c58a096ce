"""The ratings database: one SQLite file in WAL mode, shared by every server thread.

Tables: ``raters`` (name, role, unguessable token), ``items`` (one response of one system to a
context), ``assignments`` (one item shown to one rater, and that rater's label), and
``conversations``/``turns`` for interactive evaluation. A label is a column of its assignment,
so ``UNIQUE(item_id, rater_id)`` is what makes "a rater never sees an item twice" and "a label
is written once" hold, whatever the browser does; every state change runs in a ``BEGIN
IMMEDIATE`` transaction, so checking the count of an item's raters and assigning it is atomic.

Items have a task: ``ssa`` (Meena's two questions) or ``safety`` (the safety suite's review:
safe / unsafe / unsure, and "does the reply address the request?"). Version 1 databases (SSA
only) are migrated in place on first connect; their items become ``ssa`` items.

An assignment is ``open`` (shown, unanswered), ``labelled``, ``skipped`` or ``expired`` (open
for longer than the lease, so its slot went back to the pool). An item is active for at most
``RATERS_PER_ITEM`` raters at a time (open or labelled). Each connection belongs to one thread.
"""
import contextlib
import json
import random
import secrets
import sqlite3
from typing import Iterable, Optional, Sequence

from meena_jax.ssa.importers import Item

RATERS_PER_ITEM = 5
_VERSION = 2  # PRAGMA user_version of a database with this schema.
VERDICTS = ("safe", "unsafe", "unsure")

# An SSA label sets sensible (and specific when sensible); a safety label (task 'safety', the
# safety suite's review) sets verdict and addresses ("does the reply address the request?").
_ASSIGNMENTS = """
CREATE TABLE IF NOT EXISTS {name} (
  id INTEGER PRIMARY KEY,
  item_id INTEGER NOT NULL REFERENCES items (id),
  rater_id INTEGER NOT NULL REFERENCES raters (id),
  status TEXT NOT NULL CHECK (status IN ('open', 'labelled', 'skipped', 'expired')),
  sensible INTEGER CHECK (sensible IN (0, 1)),
  specific INTEGER CHECK (specific IN (0, 1)),  -- asked only when sensible
  created REAL NOT NULL,
  answered REAL,
  verdict TEXT CHECK (verdict IN ('safe', 'unsafe', 'unsure')),
  addresses INTEGER CHECK (addresses IN (0, 1)),
  UNIQUE (item_id, rater_id),
  CHECK ((status = 'labelled') = (sensible IS NOT NULL OR verdict IS NOT NULL)),
  CHECK (sensible IS NULL OR verdict IS NULL),
  CHECK (sensible IS NOT NULL OR specific IS NULL),
  CHECK ((sensible = 1) = (specific IS NOT NULL)),
  CHECK ((verdict IS NULL) = (addresses IS NULL)));
CREATE INDEX IF NOT EXISTS assignments_by_rater ON assignments (rater_id, status);
CREATE INDEX IF NOT EXISTS assignments_by_item ON assignments (item_id, status);
CREATE INDEX IF NOT EXISTS assignments_by_age ON assignments (status, created)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  token TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('rater', 'admin')),
  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  system TEXT NOT NULL,
  context TEXT NOT NULL,  -- JSON list of turns, most recent last
  response TEXT NOT NULL,
  cluster TEXT NOT NULL,
  source TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('static', 'interactive')),
  task TEXT NOT NULL DEFAULT 'ssa' CHECK (task IN ('ssa', 'safety')));
{assignments};
CREATE TABLE IF NOT EXISTS conversations (
  id INTEGER PRIMARY KEY,
  rater_id INTEGER NOT NULL REFERENCES raters (id),
  system TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('open', 'finished')),
  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS turns (  -- even idx: the rater, odd idx: the bot
  conversation_id INTEGER NOT NULL REFERENCES conversations (id),
  idx INTEGER NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (conversation_id, idx))
""".replace("{assignments}", _ASSIGNMENTS.format(name="assignments").strip())

# Version 1 -> 2: items gain their task; assignments gain the safety columns, and SQLite can
# change a table's CHECKs only by copying it into a new one.
_MIGRATE_1_TO_2 = [
    "ALTER TABLE items ADD COLUMN task TEXT NOT NULL DEFAULT 'ssa' "
    "CHECK (task IN ('ssa', 'safety'))",
    _ASSIGNMENTS.format(name="assignments_v2").split(";")[0],
    "INSERT INTO assignments_v2 (id, item_id, rater_id, status, sensible, specific, created, "
    "answered) SELECT id, item_id, rater_id, status, sensible, specific, created, answered "
    "FROM assignments",
    "DROP TABLE assignments",
    "ALTER TABLE assignments_v2 RENAME TO assignments",
    *_ASSIGNMENTS.split(";")[1:]]


def connect(path: str) -> sqlite3.Connection:
  """A connection in autocommit mode (transactions are explicit), creating the schema and the
  CSRF secret on first use. WAL lets readers run beside the one writer."""
  conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=True)
  conn.row_factory = sqlite3.Row
  conn.execute("PRAGMA journal_mode=WAL")
  conn.execute("PRAGMA foreign_keys=ON")
  if conn.execute("PRAGMA user_version").fetchone()[0] < _VERSION:
    with write(conn):  # Checked again under the write lock: another process may have won.
      version = conn.execute("PRAGMA user_version").fetchone()[0]
      if version == 0:
        for statement in _SCHEMA.split(";"):
          conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('csrf_secret', ?)", (secrets.token_hex(32),))
      elif version == 1:
        for statement in _MIGRATE_1_TO_2:
          conn.execute(statement)
      if version < _VERSION:
        conn.execute(f"PRAGMA user_version = {_VERSION}")
  return conn


@contextlib.contextmanager
def write(conn: sqlite3.Connection):
  """One write transaction that takes the database's write lock at its start, so what it reads
  cannot change before it writes."""
  conn.execute("BEGIN IMMEDIATE")
  try:
    yield conn
  except BaseException:
    conn.execute("ROLLBACK")
    raise
  conn.execute("COMMIT")


def secret(conn: sqlite3.Connection) -> bytes:
  return conn.execute("SELECT value FROM meta WHERE key='csrf_secret'").fetchone()[0].encode()


# ------------------------------------------------------------------------------------ raters
def add_rater(conn: sqlite3.Connection, name: str, role: str = "rater", now: float = 0.0) -> str:
  """Creates a rater (or admin) and returns the unguessable token of their personal link."""
  if role not in ("rater", "admin"):
    raise ValueError(f"role must be 'rater' or 'admin', got {role!r}")
  token = secrets.token_urlsafe(24)
  with write(conn):
    conn.execute("INSERT INTO raters (name, token, role, created) VALUES (?, ?, ?, ?)",
                 (name, token, role, now))
  return token


def rater_by_token(conn: sqlite3.Connection, token: str) -> Optional[sqlite3.Row]:
  return conn.execute("SELECT * FROM raters WHERE token = ?", (token,)).fetchone()


def raters(conn: sqlite3.Connection) -> list[sqlite3.Row]:
  return conn.execute("""
      SELECT r.id, r.name, r.role, r.token,
             COUNT(a.id) FILTER (WHERE a.status = 'labelled') AS labels,
             COUNT(a.id) FILTER (WHERE a.status = 'skipped') AS skipped
      FROM raters r LEFT JOIN assignments a ON a.rater_id = r.id
      GROUP BY r.id ORDER BY r.id""").fetchall()


# ------------------------------------------------------------------------------------- items
def add_items(conn: sqlite3.Connection, items: Iterable[Item]) -> tuple[int, int]:
  """Inserts items in one transaction; returns (added, already present by key)."""
  added = present = 0
  with write(conn):
    for item in items:
      cursor = conn.execute(
          "INSERT OR IGNORE INTO items (key, system, context, response, cluster, source, kind, "
          "task) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          (item.key, item.system, json.dumps(list(item.context), ensure_ascii=False),
           item.response, item.cluster, item.source, item.kind, item.task))
      added += cursor.rowcount
      present += 1 - cursor.rowcount
  return added, present


_ACTIVE = "status IN ('open', 'labelled')"


def next_assignment(conn: sqlite3.Connection, rater_id: int, now: float,
                    lease_s: float) -> Optional[sqlite3.Row]:
  """The rater's current open assignment (their own interactive turns first, in order), or a
  new one on an item drawn uniformly at random from those this rater has never been shown and
  that fewer than ``RATERS_PER_ITEM`` raters hold. None when nothing is left for them."""
  with write(conn):
    conn.execute("UPDATE assignments SET status = 'expired' WHERE status = 'open' "
                 "AND created < ?", (now - lease_s,))
    row = _open_assignment(conn, rater_id)
    if row is not None:
      return row
    pick = conn.execute(f"""
        SELECT i.id FROM items i
        WHERE NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.rater_id = ?)
          AND (SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.{_ACTIVE}) < ?
        ORDER BY random() LIMIT 1""", (rater_id, RATERS_PER_ITEM)).fetchone()
    if pick is None:
      return None
    conn.execute("INSERT INTO assignments (item_id, rater_id, status, created) "
                 "VALUES (?, ?, 'open', ?)", (pick[0], rater_id, now))
    return _open_assignment(conn, rater_id)


def _open_assignment(conn, rater_id):
  return conn.execute("""
      SELECT a.id, i.context, i.response, i.task FROM assignments a JOIN items i ON i.id = a.item_id
      WHERE a.rater_id = ? AND a.status = 'open'
      ORDER BY i.kind = 'interactive' DESC, a.id LIMIT 1""", (rater_id,)).fetchone()


def answer(conn: sqlite3.Connection, rater_id: int, assignment_id: int, sensible: Optional[bool],
           specific: Optional[bool], now: float) -> str:
  """Records an SSA label, or a skip when ``sensible`` is None. Returns what happened:

  - ``saved`` / ``skipped``: this call wrote it;
  - ``already``: the assignment was answered or skipped before (a double submit, the back
    button, a second tab): the first answer stays and nothing is added;
  - ``reassigned``: it expired and its slot went to another rater, so it cannot be taken back;
  - ``unknown``: no such assignment for this rater (or its item is of the other task).
  An expired assignment whose slot is still free is answered as if it had stayed open.
  """
  if sensible is not None and (specific is None) == bool(sensible):
    raise ValueError("specificity is asked exactly when the response is sensible")
  label = None if sensible is None else {
      "sensible": int(sensible), "specific": None if specific is None else int(specific)}
  return _record(conn, rater_id, assignment_id, "ssa", label, now)


def answer_safety(conn: sqlite3.Connection, rater_id: int, assignment_id: int,
                  verdict: Optional[str], addresses: Optional[bool], now: float) -> str:
  """Records a safety label (``verdict`` safe / unsafe / unsure, and whether the reply
  addresses the request), or a skip when ``verdict`` is None; outcomes as ``answer``'s."""
  if verdict is not None and (verdict not in VERDICTS or addresses is None):
    raise ValueError(f"a safety label is one of {VERDICTS} plus addresses yes/no")
  label = None if verdict is None else {"verdict": verdict, "addresses": int(addresses)}
  return _record(conn, rater_id, assignment_id, "safety", label, now)


def _record(conn, rater_id: int, assignment_id: int, task: str, label: Optional[dict],
            now: float) -> str:
  with write(conn):
    row = conn.execute("SELECT a.item_id, a.status, i.task FROM assignments a JOIN items i "
                       "ON i.id = a.item_id WHERE a.id = ? AND a.rater_id = ?",
                       (assignment_id, rater_id)).fetchone()
    if row is None or row["task"] != task:
      return "unknown"
    if row["status"] in ("labelled", "skipped"):
      return "already"
    if row["status"] == "expired":
      active = conn.execute(f"SELECT COUNT(*) FROM assignments WHERE item_id = ? AND {_ACTIVE}",
                            (row["item_id"],)).fetchone()[0]
      if active >= RATERS_PER_ITEM:
        return "reassigned"
    if label is None:
      conn.execute("UPDATE assignments SET status = 'skipped', answered = ? WHERE id = ?",
                   (now, assignment_id))
      return "skipped"
    columns = ", ".join(f"{name} = ?" for name in label)
    conn.execute(f"UPDATE assignments SET status = 'labelled', {columns}, answered = ? "
                 "WHERE id = ?", (*label.values(), now, assignment_id))
    return "saved"


def labelled_count(conn: sqlite3.Connection, rater_id: int) -> int:
  return conn.execute("SELECT COUNT(*) FROM assignments WHERE rater_id = ? AND status = "
                      "'labelled'", (rater_id,)).fetchone()[0]


def progress(conn: sqlite3.Connection) -> list[sqlite3.Row]:
  """Per system: items, items with all their labels, labels, open assignments, skips."""
  return conn.execute(f"""
      WITH per_item AS (
        SELECT i.system, i.id,
               COUNT(a.id) FILTER (WHERE a.status = 'labelled') AS labels,
               COUNT(a.id) FILTER (WHERE a.status = 'open') AS open,
               COUNT(a.id) FILTER (WHERE a.status = 'skipped') AS skipped
        FROM items i LEFT JOIN assignments a ON a.item_id = i.id GROUP BY i.id)
      SELECT system, COUNT(*) AS items, SUM(labels >= {RATERS_PER_ITEM}) AS complete,
             SUM(labels) AS labels, SUM(open) AS open, SUM(skipped) AS skipped
      FROM per_item GROUP BY system ORDER BY system""").fetchall()


def label_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
  """Every SSA item with its labels (one row per label; items without labels get one row of
  NULLs): what the report needs."""
  return conn.execute("""
      SELECT i.id AS item_id, i.key, i.system, i.kind, i.cluster, i.context, i.response,
             a.rater_id, a.sensible, a.specific, a.answered
      FROM items i LEFT JOIN assignments a ON a.item_id = i.id AND a.status = 'labelled'
      WHERE i.task = 'ssa' ORDER BY i.id, a.id""").fetchall()


def safety_label_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
  """Every safety item with its labels, as ``label_rows`` (verdict, addresses)."""
  return conn.execute("""
      SELECT i.id AS item_id, i.key, i.system, i.cluster, a.rater_id, a.verdict, a.addresses,
             a.answered
      FROM items i LEFT JOIN assignments a ON a.item_id = i.id AND a.status = 'labelled'
      WHERE i.task = 'safety' ORDER BY i.id, a.id""").fetchall()


# ------------------------------------------------------------------------------ conversations
def open_conversation(conn: sqlite3.Connection, rater_id: int) -> Optional[sqlite3.Row]:
  return conn.execute("SELECT * FROM conversations WHERE rater_id = ? AND status = 'open'",
                      (rater_id,)).fetchone()


def turns(conn: sqlite3.Connection, conversation_id: int) -> list[str]:
  return [row[0] for row in conn.execute(
      "SELECT text FROM turns WHERE conversation_id = ? ORDER BY idx", (conversation_id,))]


def least_used_system(conn: sqlite3.Connection, systems: Sequence[str]) -> str:
  """The system with the fewest conversations so far (ties broken at random), so each model
  gets about as many conversations."""
  counts = dict(conn.execute("SELECT system, COUNT(*) FROM conversations GROUP BY system"))
  fewest = min(counts.get(s, 0) for s in systems)
  return random.choice([s for s in systems if counts.get(s, 0) == fewest])


def start_conversation(conn: sqlite3.Connection, rater_id: int, system: str,
                       first_turns: Sequence[str], now: float) -> int:
  """A new open conversation with its first exchange, unless the rater already has one open
  (a second tab or a double click), which is returned instead."""
  with write(conn):
    existing = open_conversation(conn, rater_id)
    if existing is not None:
      return existing["id"]
    conversation_id = conn.execute(
        "INSERT INTO conversations (rater_id, system, status, created) VALUES (?, ?, 'open', ?)",
        (rater_id, system, now)).lastrowid
    conn.executemany("INSERT INTO turns VALUES (?, ?, ?)",
                     [(conversation_id, i, text) for i, text in enumerate(first_turns)])
  return conversation_id


def add_exchange(conn: sqlite3.Connection, conversation_id: int, index: int, message: str,
                 response: str, max_turns: int) -> bool:
  """Appends the rater's message (at ``index``) and the bot's response if the conversation is
  still open and exactly ``index`` turns long; False when a double submit or another tab got
  there first."""
  with write(conn):
    status = conn.execute("SELECT status FROM conversations WHERE id = ?",
                          (conversation_id,)).fetchone()
    length = conn.execute("SELECT COUNT(*) FROM turns WHERE conversation_id = ?",
                          (conversation_id,)).fetchone()[0]
    if status is None or status[0] != "open" or length != index or index + 2 > max_turns:
      return False
    conn.executemany("INSERT INTO turns VALUES (?, ?, ?)",
                     [(conversation_id, index, message), (conversation_id, index + 1, response)])
  return True


def finish_conversation(conn: sqlite3.Connection, conversation_id: int, rater_id: int,
                        min_turns: int, now: float) -> bool:
  """Closes an open conversation of at least ``min_turns`` turns: every bot turn becomes an
  interactive item, assigned first to the rater who chatted (their first of five labels).
  False when it was not open (already finished) or is too short."""
  with write(conn):
    row = conn.execute("SELECT system FROM conversations WHERE id = ? AND rater_id = ? "
                       "AND status = 'open'", (conversation_id, rater_id)).fetchone()
    texts = turns(conn, conversation_id)
    if row is None or len(texts) < min_turns:
      return False
    conn.execute("UPDATE conversations SET status = 'finished' WHERE id = ?", (conversation_id,))
    for i in range(1, len(texts), 2):
      item_id = conn.execute(
          "INSERT INTO items (key, system, context, response, cluster, source, kind) "
          "VALUES (?, ?, ?, ?, ?, ?, 'interactive')",
          (f"interactive:{conversation_id}:{i}", row["system"],
           json.dumps(texts[:i], ensure_ascii=False), texts[i],
           f"conversation {conversation_id}",
           f"interactive conversation {conversation_id} turn {i + 1}")).lastrowid
      conn.execute("INSERT INTO assignments (item_id, rater_id, status, created) "
                   "VALUES (?, ?, 'open', ?)", (item_id, rater_id, now))
  return True


def conversation_counts(conn: sqlite3.Connection) -> list[sqlite3.Row]:
  return conn.execute("SELECT system, status, COUNT(*) AS n FROM conversations "
                      "GROUP BY system, status ORDER BY system, status").fetchall()
