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
import stat
import sys

LOCK_FILE = ".lock"


class WorkdirError(ValueError):
  """A work directory that cannot be used (not a folder, not writable, busy)."""


def resolve(workdir: os.PathLike | str, what: str = "the work directory") -> pathlib.Path:
  """``workdir`` as an absolute path (``~`` expanded), refused by name when unusable.

  Checks only, creates nothing: an empty value (``--workdir=``), a path that
  is or runs through a file, or a folder this process cannot write. ``what``
  names the folder in messages (e.g. ``"--export_dir"``).
  """
  text = os.fspath(workdir)
  if not str(text).strip():
    flag = "--workdir" if what == "the work directory" else what
    raise WorkdirError(f"{what} is empty ({flag}=); give a folder, e.g. runs")
  path = pathlib.Path(text).expanduser().resolve()
  existing = path
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    where = "is" if existing == path else f"runs through {existing}, which is"
    raise WorkdirError(f"{what} {path} {where} a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise WorkdirError(f"{what} {path} cannot be written ({existing} is read-only)")
  return path


class WorkdirLock:
  """Holds ``workdir`` for this process; a second holder gets ``WorkdirError`` at once."""

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / LOCK_FILE
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    # Never through a link: a .lock pointing elsewhere would be truncated and written.
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
      fd = os.open(self.path, flags, 0o666)
    except OSError as e:
      kind = "a symbolic link" if os.path.islink(self.path) else "not a file this run can use"
      raise WorkdirError(
        f"the work directory's lock {self.path} is {kind} ({e.strerror}); remove it and re-run"
      ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      os.close(fd)
      raise WorkdirError(f"the work directory's lock {self.path} is not a regular file; remove it")
    handle = os.fdopen(fd, "r+", encoding="utf-8")  # pylint: disable=consider-using-with
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


# ------------------------------------------------------------- run records

_NUMBERS = {
  "test": (
    "keras_macro_f1",
    "keras_accuracy",
    "keras_infer_s",
    "port_infer_s",
    "port_macro_f1",
    "agreement_pct",
    "max_abs_diff",
  ),
  "train": ("epochs_run", "best_epoch", "best_val_loss", "train_time_s"),
}
DAMAGED_SUFFIX = ".damaged"


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_problem(record, history) -> str | None:
  """Why a run's ``result.json`` (``record``) and ``history.json`` (``history``)
  cannot be counted, or None when the report can use them as they are."""
  if not isinstance(record, dict):
    return f"the record is a {type(record).__name__}, not an object"
  for key, kind in (("variant", str), ("run_key", str), ("seed", int), ("versions", dict)):
    if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
      return f"{key!r} is missing or not a {kind.__name__}"
  if not _number(record.get("wall_time_s", 0.0)):
    return "'wall_time_s' is not a number"
  if not isinstance(record.get("reused_from"), (str, type(None))):
    return "'reused_from' is not a path"
  for part, keys in _NUMBERS.items():
    values = record.get(part)
    if not isinstance(values, dict):
      return f"{part!r} is missing or not an object"
    for key in keys:
      if not _number(values.get(key)):
        return f"{part}.{key} is missing or not a number ({values.get(key)!r:.40})"
  matrix = record["test"].get("confusion_matrix")
  if matrix is not None and not (
    isinstance(matrix, list)
    and all(isinstance(row, list) and len(row) == len(matrix) for row in matrix)
    and all(isinstance(v, int) and not isinstance(v, bool) for row in matrix for v in row)
  ):
    return "test.confusion_matrix is not a square table of counts"
  if not isinstance(history, dict) or not all(
    isinstance(curve, list) and all(_number(v) for v in curve) for curve in history.values()
  ):
    return "history.json is not an object of per-epoch number lists"
  return None


def read_record(run_dir: pathlib.Path, result_file: str, history_file: str) -> dict | None:
  """The run's finished record (``result_file``), or None when it has none.

  A record that does not validate (truncated, edited, a damaged history beside
  it) is moved aside to ``<result_file>.damaged`` and None returned, so the
  run counts as unfinished and is redone. A run directory that is a file is
  refused by name (``WorkdirError``): it is not ours to remove.
  """
  run_dir = pathlib.Path(run_dir)
  if run_dir.exists() and not run_dir.is_dir():
    raise WorkdirError(f"{run_dir} should be a run directory but is a file; move it away")
  path = run_dir / result_file
  if not path.exists():
    return None
  try:
    record = json.loads(path.read_text(encoding="utf-8"))
    history = json.loads((run_dir / history_file).read_text(encoding="utf-8"))
    problem = record_problem(record, history)
  except (OSError, ValueError, RecursionError) as e:
    problem = f"unreadable ({type(e).__name__}: {e})"
  if problem is None:
    return record
  os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
  print(
    f"warning: {path} does not validate ({problem}); moved to {path.name}{DAMAGED_SUFFIX}, "
    "the run is redone",
    file=sys.stderr,
    flush=True,
  )
  return None
