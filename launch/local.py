"""Rehearse a multi-host (pod) run on one machine: N processes x M fake CPU devices.

  python launch/local.py --processes 2 --devices 2 -- \\
      python -m meena_jax train --gin_file=gin/runs/et_tiny_chitchat.gin --gin.MODEL_DIR=/tmp/r

Every process runs the same command plus ``--coordinator_address=127.0.0.1:PORT
--num_processes=N --process_id=I`` (what ``jax.distributed.initialize`` needs; on a TPU pod
``--distributed`` finds them itself), with ``XLA_FLAGS`` giving it M CPU devices. Their output
is streamed line by line with a ``[pI]`` prefix. If any process fails, the others are stopped
and this command exits with the first failure's code.
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
from typing import Optional, Sequence


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _stream(process: subprocess.Popen, prefix: str, sink, lock: threading.Lock):
  for line in process.stdout:
    with lock:
      sink.write(f"{prefix} {line}")
      sink.flush()


def run_local(command: Sequence[str], processes: int, devices: int, *,
              port: Optional[int] = None, env: Optional[dict] = None, sink=None,
              timeout: Optional[float] = None, cwd: Optional[str] = None) -> int:
  """Runs ``command`` as ``processes`` JAX processes of ``devices`` CPU devices each (in
  ``cwd``, default this one); returns 0, or the exit code of the first process that failed
  (the rest are then killed)."""
  if processes < 1 or devices < 1:
    raise ValueError(f"need at least one process and one device, got {processes} x {devices}")
  sink = sink or sys.stdout
  port = port or free_port()
  base_env = dict(os.environ if env is None else env)
  flags = [f for f in base_env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]  # Others are kept.
  base_env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  base_env["JAX_PLATFORMS"] = "cpu"
  base_env["PYTHONUNBUFFERED"] = "1"
  lock, children, threads = threading.Lock(), [], []
  for index in range(processes):
    argv = list(command) + [f"--coordinator_address=127.0.0.1:{port}",
                            f"--num_processes={processes}", f"--process_id={index}"]
    child = subprocess.Popen(argv, env=base_env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
    children.append(child)
    thread = threading.Thread(target=_stream, args=(child, f"[p{index}]", sink, lock),
                              daemon=True)
    thread.start()
    threads.append(thread)
  failure = _wait(children, timeout)
  for thread in threads:
    thread.join(timeout=5)
  return failure


def _wait(children, timeout) -> int:
  """Polls until all exit; on the first non-zero exit (or the timeout) kills the rest."""
  import time  # pylint: disable=import-outside-toplevel
  deadline = None if timeout is None else time.monotonic() + timeout
  while True:
    codes = [c.poll() for c in children]
    failed = [code for code in codes if code not in (None, 0)]
    timed_out = deadline is not None and time.monotonic() > deadline
    if failed or timed_out or all(code == 0 for code in codes):
      for child in children:
        if child.poll() is None:
          child.kill()
          child.wait()
      if timed_out and not failed:
        return 124
      return failed[0] if failed else 0
    time.sleep(0.2)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--processes", type=int, default=2, help="processes (hosts) to start")
  parser.add_argument("--devices", type=int, default=4, help="CPU devices per process")
  parser.add_argument("--port", type=int, help="coordinator port (default: a free one)")
  parser.add_argument("command", nargs=argparse.REMAINDER,
                      help="the command every process runs, after --")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command to run after --")
  sys.exit(run_local(command, args.processes, args.devices, port=args.port))


if __name__ == "__main__":
  main()
