"""The one path layer: every run file may live on local disk or in Cloud Storage (``gs://``).

Paths are ``etils.epath.Path``s, the path type orbax and TFDS already use. A local path is
expanded (``~``) and made absolute; a ``gs://`` path stays a URI. epath reads and writes
``gs://`` through TensorFlow's GCS filesystem (the client TFDS, SeqIO and TensorBoard use too,
so one client, one set of credentials and one retry policy serve every file but the arrays:
orbax writes those through tensorstore). On a TPU VM both find application default
credentials by themselves; both retry 429 and 5xx answers with exponential backoff (TensorFlow
10 times from 1 s, tensorstore per its ``gcs`` driver), so a transient error costs seconds.

What is written here: one-line errors (``StorageError``) that name the path, the setting that
gave it and what to do, for a bucket that does not exist, a 403 and a missing path, checked
before any expensive work; and the few operations whose local and ``gs://`` forms differ
(a directory check that writes and deletes a probe, an atomic text write, moving a tree).
"""
import os
import re
import uuid
from typing import Optional

from etils import epath

Path = epath.Path


class StorageError(OSError):
  """A path cannot be used: one line naming the path, the setting and why (``why`` alone is
  an attribute too, for callers that phrase the line themselves)."""

  def __init__(self, message: str, why: str = ""):
    super().__init__(message)
    self.why = why or message


def path(location) -> epath.Path:
  """``location`` as an epath ``Path``: URIs as given, local paths expanded and absolute."""
  text = os.fspath(location)
  if is_remote(text):
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def is_remote(location) -> bool:
  """Whether ``location`` is a URI (``gs://...``) rather than a local path."""
  return "://" in os.fspath(location)


def bucket(location) -> Optional[str]:
  """``gs://BUCKET/...`` -> ``BUCKET``; None for a local path."""
  match = re.match(r"^gs://([^/]+)", os.fspath(location))
  return match[1] if match else None


def reason(error: BaseException) -> str:
  """A short cause of a storage error: the HTTP status of a GCS answer, in words, or the
  first line of the message (TensorFlow's run to many lines of response body)."""
  text = str(getattr(error, "message", None) or error)
  status = re.search(r"HTTP response code (\d+)", text)
  if status:
    code = int(status[1])
    return {401: "not authenticated (HTTP 401): no usable credentials (on a TPU VM the "
                 "service account; elsewhere `gcloud auth application-default login`)",
            403: "permission denied (HTTP 403): the credentials may not use it",
            404: "not found (HTTP 404)"}.get(code, f"HTTP {code}")
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


def error(location, setting: str, why: str) -> StorageError:
  """``StorageError("<setting>=<location>: <why>")``."""
  return StorageError(f"{setting}={location}: {why}", why)


def check_bucket(location, setting: str):
  """Raises ``StorageError`` when the bucket of a ``gs://`` path does not exist or cannot be
  read with these credentials (a local path passes). One metadata request."""
  name = bucket(location)
  if name is None:
    return
  try:
    exists = epath.Path(f"gs://{name}").exists()
  except Exception as failure:  # pylint: disable=broad-except  # TensorFlow's OpError kinds.
    raise error(location, setting, f"bucket gs://{name}: {reason(failure)}") from None
  if not exists:
    raise error(location, setting, f"bucket gs://{name} does not exist (create it: gcloud "
                                   f"storage buckets create gs://{name} --location=REGION)")


def writable_dir(location, setting: str) -> epath.Path:
  """``location`` as a directory this process can write, created if missing: a probe is
  written and deleted. Otherwise raises ``StorageError`` naming the setting, the path and why
  (no such bucket, a 403, a regular file in the way, a read-only mount), before anything
  else is written."""
  directory = path(location)
  check_bucket(location, setting)
  if not is_remote(location):
    for parent in [directory, *directory.parents]:
      if parent.exists() and not parent.is_dir():
        raise error(location, setting, f"{parent} is a regular file, not a directory")
  probe = directory / f".meena_jax_write_check-{uuid.uuid4().hex[:12]}"
  try:
    if not is_remote(location):  # GCS has no directories: writing the object makes them.
      directory.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"")
    probe.unlink()
  except Exception as failure:  # pylint: disable=broad-except  # OSError or TensorFlow's.
    raise error(location, setting, f"it cannot be written ({reason(failure)})") from None
  return directory


def existing(location, setting: str, what: str = "path") -> epath.Path:
  """``location`` as a ``Path`` that exists (file or directory); otherwise ``StorageError``
  naming the setting (after checking the bucket, so a typo in it says so)."""
  found = path(location)
  check_bucket(location, setting)
  try:
    present = found.exists()
  except Exception as failure:  # pylint: disable=broad-except
    raise error(location, setting, f"cannot read it ({reason(failure)})") from None
  if not present:
    raise error(location, setting, f"no such {what}")
  return found


def write_text(location, text: str):
  """``write_bytes`` of ``text`` in UTF-8."""
  write_bytes(location, text.encode("utf-8"))


def write_bytes(location, data: bytes):
  """Writes ``data`` whole or not at all: a local file goes through a temporary file renamed
  over it; a GCS object appears only once its upload completes."""
  target = path(location)
  if is_remote(location):
    target.write_bytes(data)
    return
  staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
  try:
    staging.write_bytes(data)
    os.replace(staging, target)
  finally:
    if staging.exists():
      staging.unlink()


def move_tree(source, target):
  """Moves a directory. Locally a rename; on GCS each object is copied, then deleted (what a
  rename is there), so a crash half-way leaves both copies, never neither."""
  path(target).parent.mkdir(parents=True, exist_ok=True)
  path(source).rename(path(target))


def remove_tree(location):
  """Deletes a directory and everything in it (nothing when it does not exist)."""
  directory = path(location)
  if directory.exists():
    directory.rmtree()
