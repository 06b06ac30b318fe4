"""The study runner's work directory: checked before any work, held by one process at a time.

Two runs of a study in one work directory would train the same runs at once,
and each would clear the other's run directories. ``WorkdirLock`` makes the
second one stop at once, naming the process that holds the directory. The lock
is an advisory ``flock`` on ``<workdir>/.lock``: the kernel drops it when its
holder exits, killed or not, so a stale lock never blocks a resumed run.
"""

import datetime
import fcntl
import json
import os
import pathlib
import socket
import sys

LOCK_FILE = ".lock"


class WorkdirError(ValueError):
  """A work directory that cannot be used (not a folder, not writable, busy)."""


def resolve(workdir: os.PathLike | str) -> pathlib.Path:
  """``workdir`` as an absolute path (``~`` expanded), refused by name when unusable.

  Checks only, creates nothing: an empty value (``--workdir=``), a path that
  is or runs through a file, or a folder this process cannot write.
  """
  text = os.fspath(workdir)
  if not str(text).strip():
    raise WorkdirError("the work directory is empty (--workdir=); give a folder, e.g. runs")
  path = pathlib.Path(text).expanduser().resolve()
  existing = path
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    where = "is" if existing == path else f"runs through {existing}, which is"
    raise WorkdirError(f"the work directory {path} {where} a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise WorkdirError(f"the work directory {path} cannot be written ({existing} is read-only)")
  return path


class WorkdirLock:
  """Holds ``workdir`` for this process; a second holder gets ``WorkdirError`` at once."""

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / LOCK_FILE
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(self.path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      handle.close()
      raise WorkdirError(
        f"the work directory {self.path.parent} is in use by {_describe(holder)}; wait for it "
        "to finish (re-running the command afterwards resumes), or use another --workdir"
      ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(
      json.dumps(
        {
          "pid": os.getpid(),
          "host": socket.gethostname(),
          "started": datetime.datetime.now().isoformat(timespec="seconds"),
          "command": " ".join(sys.argv),
        }
      )
    )
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *exc_info) -> None:
    if self._file is not None:
      self._file.truncate(0)
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def _describe(holder: str) -> str:
  try:
    info = json.loads(holder)
  except json.JSONDecodeError:
    return holder
  return (
    f"process {info.get('pid')} on {info.get('host')} (started {info.get('started')}: "
    f"{info.get('command')!r})"
  )
