"""`python -m MODULE ...` for the tests, without paying for the import each
time: a server process imports the project's commands (and TensorFlow)
once, then forks a child per command line. The child takes the cwd and
environment asked for and the stdout and stderr pipes the test passed
(SCM_RIGHTS, with the socket on which the server reports the pid and the
exit status; no file or path is involved), imports the module and calls
its `run()`, which is all its `__main__` block does. Starting a search
this way costs milliseconds instead of about 5 s of CPU.

`Popen` and `run` mirror subprocess's for these command lines: the pid is
the command's own (signals, SIGKILL and `is in use by pid N` work as with
subprocess), and the exit status is the one subprocess would report
(negative for a signal). Any other argv runs through subprocess itself.
What differs from a new interpreter: the environment is the child's from
the moment it forks, so a variable that a library reads only when it is
imported (TensorFlow's TF_ENABLE_ONEDNN_OPTS, say) has the server's value;
a test about such a variable starts its own process.
One server per test process (pytest-xdist worker), started on first use;
it ends when that process does.

    python tests/forkserver.py FD   (the server, started by `Popen`; FD: its
                                     end of a SOCK_SEQPACKET socketpair)
"""

import atexit
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The commands the server runs; anything else goes through subprocess.
MODULES = ("trainer.main", "trainer.compare", "trainer.arch",
           "trainer.report")
PIPE, STDOUT = subprocess.PIPE, subprocess.STDOUT


# ----------------------------------------------------------------- server

# What the commands import when they run (lazily, in them), but not the
# command modules: each defines its own absl flags, some by the same
# names, so each child imports its own.
PRELOAD = ("importlib.abc", "ml_collections", "tensorflow_datasets",
           "absl.app", "improve_nas.verbosity",
           "improve_nas.config", "improve_nas.configs", "improve_nas.lock",
           "improve_nas.model_dir", "improve_nas.study",
           "improve_nas.tf_config", "improve_nas.threads",
           "improve_nas.nasnet.counting", "improve_nas.nasnet.tower")
PRELOAD_ADANET = ("improve_nas.compare", "improve_nas.export",
                  "improve_nas.mirrored", "improve_nas.progress",
                  "improve_nas.report", "improve_nas.roles",
                  "improve_nas.search")
PRELOAD_KERAS = ("improve_nas.keras_engine.search",
                 "trainer.keras_main")  # defines no flags


def preload():
  """Imports PRELOAD and the modules of this environment's engine."""
  import importlib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  adanet = importlib.util.find_spec("adanet") is not None
  for name in PRELOAD + (PRELOAD_ADANET if adanet else PRELOAD_KERAS):
    importlib.import_module(name)


def _child(request, fds, sockets):
  """In the forked child: becomes `python -m MODULE ARGS` and exits."""
  import importlib  # pylint: disable=g-import-not-at-top
  code = 1
  try:
    for sock in sockets:  # the server's: the test waits on their ends
      sock.close()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1] if len(fds) > 1 else fds[0], 2)
    for fd in {devnull, *fds}:
      os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    module = importlib.import_module(request["module"])
    sys.argv = [module.__file__, *request["args"]]  # as `python -m` sets it
    try:
      module.run()  # what `python -m` runs: `if __name__ == "__main__"`
      code = 0
    except SystemExit as e:
      if e.code is None or isinstance(e.code, int):
        code = e.code or 0
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
      code = -signal.SIGINT
    except BaseException:  # pylint: disable=broad-except
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()  # as the interpreter would: status 1
      code = 1
    atexit._run_exitfuncs()  # pylint: disable=protected-access
  finally:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except Exception:  # pylint: disable=broad-except
        pass
    if code == -signal.SIGINT:  # as Python ends on an uncaught Ctrl-C
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)  # pylint: disable=protected-access


def serve(fd):
  """Takes requests from the socket `fd` until the test process ends."""
  sys.path.insert(0, ROOT)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  preload()
  parent = os.getppid()
  control = socket.socket(fileno=fd)
  print("ready", flush=True)
  children = {}  # pid -> the connection that asked for it
  selector = selectors.DefaultSelector()
  selector.register(control, selectors.EVENT_READ)
  while os.getppid() == parent:
    if selector.select(timeout=0.02):
      # One request per message: JSON, with the reply socket and the
      # child's stdout (and stderr) attached.
      message, fds, _, _ = socket.recv_fds(control, 1 << 20, 3)
      if not message:
        break  # the test process is gone
      conn = socket.socket(fileno=fds[0])
      request = json.loads(message)
      pid = os.fork()
      if pid == 0:
        _child(request, fds[1:], [control, conn, *children.values()])
      for fd_ in fds[1:]:
        os.close(fd_)
      conn.sendall(f"{pid}\n".encode())
      children[pid] = conn
    while children:
      try:
        pid, status = os.waitpid(-1, os.WNOHANG)
      except ChildProcessError:
        break
      if pid == 0:
        break
      conn = children.pop(pid, None)
      if conn is not None:
        try:
          conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
          pass  # the test is gone
        conn.close()
  for pid in children:  # the test process is gone: so are its commands
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass


# ----------------------------------------------------------------- client

_server = {}
_server_lock = threading.Lock()


def _control():
  """The server's request socket, starting the server on first use."""
  if _server.get("pid") != os.getpid():
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(theirs.fileno())],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()])
    theirs.close()
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"the fork server failed: {line!r}"
    atexit.register(_stop, proc)
    _server.update(pid=os.getpid(), control=mine, proc=proc)
  return _server["control"]


def _stop(proc):
  proc.kill()
  proc.wait()


def _served(argv):
  return (len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m"
          and argv[2] in MODULES)


class _Forked:
  """The part of subprocess.Popen's interface the tests use."""

  def __init__(self, argv, cwd, env, stdout, stderr, text):
    self.args = list(argv)
    self.returncode = None
    pipes = []  # (the test's end, the child's end)
    if stdout == PIPE:
      pipes.append(os.pipe())
    else:  # the test's own stdout
      pipes.append((None, os.dup(1)))
    if stderr == PIPE:
      pipes.append(os.pipe())
    elif stderr != STDOUT:
      pipes.append((None, os.dup(2)))
    request = {"module": argv[2], "args": list(argv[3:]),
               "cwd": os.path.abspath(cwd or os.getcwd()),
               "env": dict(os.environ if env is None else env)}
    self._conn, theirs = socket.socketpair()
    try:
      with _server_lock:
        socket.send_fds(_control(), [json.dumps(request).encode()],
                        [theirs.fileno()] + [child for _, child in pipes])
    finally:
      theirs.close()
      for _, child in pipes:
        os.close(child)
    self._buffer = b""
    self.pid = int(self._line(block=True))

    def stream(end):
      if end is None:
        return None
      f = os.fdopen(end, "rb")
      return io.TextIOWrapper(f) if text else f

    self.stdout = stream(pipes[0][0])
    self.stderr = stream(pipes[1][0]) if len(pipes) > 1 else None
    self.stdin = None

  def _line(self, block):
    """The server's next line about this command ("" if none yet)."""
    while b"\n" not in self._buffer:
      try:
        data = self._conn.recv(64, 0 if block else socket.MSG_DONTWAIT)
      except BlockingIOError:
        return ""
      if not data:  # the server is gone: so is the command
        return f"{-signal.SIGKILL}\n"
      self._buffer += data
    line, self._buffer = self._buffer.split(b"\n", 1)
    return line.decode()

  def _reply(self, block):
    if self.returncode is None:
      line = self._line(block)
      if line.strip():
        self.returncode = int(line)
        self._conn.close()
    return self.returncode

  def poll(self):
    return self._reply(block=False)

  def wait(self, timeout=None):
    deadline = None if timeout is None else time.monotonic() + timeout
    while self.poll() is None:
      if deadline is not None and time.monotonic() > deadline:
        raise subprocess.TimeoutExpired(self.args, timeout)
      time.sleep(0.01)
    return self.returncode

  def send_signal(self, sig):
    if self.returncode is None:
      try:
        os.kill(self.pid, sig)
      except ProcessLookupError:
        pass

  def kill(self):
    self.send_signal(signal.SIGKILL)

  def terminate(self):
    self.send_signal(signal.SIGTERM)

  def communicate(self, timeout=None):
    """Reads both pipes to their end, then waits for the exit status."""
    results = {}

    def read(name, f):
      results[name] = f.read()

    readers = [threading.Thread(target=read, args=(name, f), daemon=True)
               for name, f in (("out", self.stdout), ("err", self.stderr))
               if f is not None]
    for r in readers:
      r.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for r in readers:
      r.join(None if deadline is None
             else max(0.0, deadline - time.monotonic()))
      if r.is_alive():
        raise subprocess.TimeoutExpired(self.args, timeout)
    self.wait(None if deadline is None
              else max(0.0, deadline - time.monotonic()))
    for f in (self.stdout, self.stderr):
      if f is not None:
        f.close()
    return results.get("out"), results.get("err")


def Popen(argv, cwd=None, env=None, stdout=None, stderr=None, text=False,
          **kwargs):  # pylint: disable=invalid-name
  """subprocess.Popen, forked from the server for the commands it serves."""
  if not _served(argv) or any(
      value not in (None, subprocess.DEVNULL) if key == "stdin" else value
      for key, value in kwargs.items()):  # e.g. preexec_fn: a real process
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout,
                            stderr=stderr, text=text, **kwargs)
  return _Forked(argv, cwd, env, stdout, stderr, text)


def run(argv, cwd=None, env=None, capture_output=False, text=False,
        timeout=None, check=False, **kwargs):
  """subprocess.run, forked from the server for the commands it serves."""
  pipe = PIPE if capture_output else None
  proc = Popen(argv, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=text,
               **kwargs)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    raise
  done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
  if check:
    done.check_returncode()
  return done


if __name__ == "__main__":
  serve(int(sys.argv[1]))
