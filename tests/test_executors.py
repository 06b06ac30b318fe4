"""Sweeps through the executors (``--workers=N``, ``--executor=ray``) against the embedded path.

One tiny study throughout: SimpleRNN ``direction`` (two variants) x two seeds, one
epoch on 40 training / 40 validation / 30 test rows of NusaX-Senti. Trained in
this process it is the reference; through two worker processes, through Ray
tasks on a local 2-CPU Ray instance, with a Ray worker killed mid-run, after a
Ctrl-C and after the driver was killed, the finished study must hold every run
once and the same metrics (TensorFlow op determinism is on everywhere). Bad
executor flags must fail before any work, an unreachable cluster within seconds.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from train import report
from train import runner
from train.executors import base
from train.executors import choose
from train.executors import local
from train.executors import ray_cluster

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILY, STUDY = "rnn", "direction"
TINY = dict(seeds=2, epochs=1, max_train_rows=40, max_test_rows=30)
CLI_TINY = [f"--family={FAMILY}", f"--study={STUDY}"] + [f"--{k}={v}" for k, v in TINY.items()]
RUNS = 4  # 2 variants x 2 seeds
DONE = "] done in "  # the progress line of a finished run


def _settings(data_dir, **kwargs) -> runner.Settings:
  return runner.Settings(data_dir=str(data_dir), verbose=0, timing_repeats=1, **{**TINY, **kwargs})


def _tables(study_dir: pathlib.Path):
  """runs.csv and results.csv without their timing columns (the numbers that must agree)."""

  def strip(rows):
    return [{k: v for k, v in r.items() if k not in report.TIMING_COLUMNS} for r in rows]

  return (
    strip(report.read_csv(study_dir / "runs.csv")),
    strip(report.read_csv(study_dir / "results.csv")),
  )


def _run(workdir, data_dir, executor, **kwargs):
  lines = []
  runner.run(
    FAMILY, STUDY, workdir, _settings(data_dir, **kwargs), log=lines.append, executor=executor
  )
  return lines


def _check_every_run_once(study_dir: pathlib.Path):
  results = sorted(study_dir.glob("*/seed*/result.json"))
  assert len(results) == RUNS, results
  assert not list(study_dir.rglob(".tmp-*")), "a half-written file was left behind"


def _ray_workers_training() -> list[int]:
  """Pids of Ray workers running a run now (they retitle themselves ray::jaxnets_run)."""
  pids = []
  for entry in pathlib.Path("/proc").iterdir():
    if not entry.name.isdigit():
      continue
    try:
      cmdline = (entry / "cmdline").read_bytes()
    except OSError:
      continue
    if cmdline.startswith(f"ray::{ray_cluster.TASK_NAME}".encode()):
      pids.append(int(entry.name))
  return pids


def _children(pid: int) -> list[int]:
  found = []
  for entry in pathlib.Path("/proc").iterdir():
    if not entry.name.isdigit():
      continue
    try:
      fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == pid:  # the field after the state is the parent's pid
      found.append(int(entry.name))
  return found


def _cmdline(pid: int) -> bytes:
  try:
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
  except OSError:
    return b""


def _alive(pid: int) -> bool:
  try:
    state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  except OSError:
    return False
  return state != "Z"  # a zombie has exited; only its parent's wait is missing


def _cli(*args, env=None, **kwargs):
  env = dict(env or os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen(
    [sys.executable, "-m", "train", *args],
    cwd=REPO_ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    **kwargs,
  )


@pytest.fixture(scope="module")
def reference(real_data_dir, tmp_path_factory):
  """The tiny study trained in this process, one run after another.

  Under pytest-xdist (CI's ``-n 2``) both workers may need it: the first trains it, the
  other waits for its tables (a file in the session's shared temporary folder).
  """
  shared = None
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = tmp_path_factory.getbasetemp().parent / "executors_reference.json"
  with contextlib.ExitStack() as stack:
    if shared is not None:
      lock = stack.enter_context(open(f"{shared}.lock", "a", encoding="utf-8"))
      fcntl.flock(lock, fcntl.LOCK_EX)
      if shared.is_file():
        return tuple(json.loads(shared.read_text()))
    workdir = tmp_path_factory.mktemp("reference")
    lines = _run(workdir, real_data_dir, None)
    assert sum(DONE in line for line in lines) == RUNS
    tables = _tables(workdir / FAMILY / STUDY)
    if shared is not None:
      shared.write_text(json.dumps(tables))
    return tables


@pytest.fixture(scope="module")
def ray_instance():
  """A local Ray instance with 2 CPUs, shared by the Ray tests (its workers stay warm)."""
  ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
  yield ray
  ray.shutdown()


# ------------------------------------------------------------- same numbers


def test_jax_trainer_goes_through_ray_with_the_same_numbers(ray_instance, real_data_dir, tmp_path):
  kwargs = dict(trainer="jax", seeds=1)  # one seed: the JAX trainer compiles per run
  _run(tmp_path / "here", real_data_dir, None, **kwargs)
  lines = _run(tmp_path / "ray", real_data_dir, ray_cluster.RayExecutor(), **kwargs)
  assert sum(DONE in line for line in lines) == RUNS // 2
  here, there = (_tables(tmp_path / d / "jax" / FAMILY / STUDY) for d in ("here", "ray"))
  assert here == there
  assert not list((tmp_path / "ray").rglob(".checkpoints-*"))


# ------------------------------------------------------------------- faults


def test_ray_gives_the_same_tables_even_when_a_worker_is_killed_mid_run(
  reference, ray_instance, real_data_dir, tmp_path
):
  """Ray tasks on 2 CPUs = the embedded path, with one worker SIGKILLed while training."""
  killed = []

  def kill_one_training_worker():
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
      pids = _ray_workers_training()
      if pids:
        time.sleep(1.0)  # mid-run, not at its first instruction
        if pids[0] in _ray_workers_training():
          os.kill(pids[0], signal.SIGKILL)
          killed.append(pids[0])
      time.sleep(0.2)

  killer = threading.Thread(target=kill_one_training_worker, daemon=True)
  killer.start()
  lines = _run(tmp_path, real_data_dir, ray_cluster.RayExecutor())
  killer.join()
  assert killed, "no Ray worker was seen training"
  summary = [line for line in lines if line.startswith("executor: ray")]
  assert summary and "2 CPUs" in summary[0] and "up to 2 runs at once" in summary[0]
  assert sum(DONE in line for line in lines) == RUNS  # one line per run, the retried one too
  study_dir = tmp_path / FAMILY / STUDY
  _check_every_run_once(study_dir)
  assert _tables(study_dir) == reference
  # Only the run's own files reach the driver (nothing of the workers' temporary folders).
  for path in study_dir.glob("*/seed*"):
    assert sorted(p.name for p in path.iterdir()) == ["history.json", "model.keras", "result.json"]


def test_ctrl_c_cancels_outstanding_runs_keeps_finished_ones_and_resumes(
  reference, ray_instance, real_data_dir, tmp_path
):
  study_dir = tmp_path / FAMILY / STUDY
  lines = []

  def interrupt_after_the_first_run(line):
    lines.append(line)
    if DONE in line:
      raise KeyboardInterrupt  # where a Ctrl-C lands: the driver is waiting for runs

  with pytest.raises(KeyboardInterrupt):
    runner.run(
      FAMILY,
      STUDY,
      tmp_path,
      _settings(real_data_dir),
      log=interrupt_after_the_first_run,
      executor=ray_cluster.RayExecutor(),
    )
  assert any("re-run the command to resume" in line for line in lines)
  finished = len(list(study_dir.glob("*/seed*/result.json")))
  assert 1 <= finished < RUNS
  deadline = time.monotonic() + 30
  while _ray_workers_training() and time.monotonic() < deadline:
    time.sleep(0.5)
  assert not _ray_workers_training(), "a cancelled run is still training"

  lines = _run(tmp_path, real_data_dir, ray_cluster.RayExecutor())
  assert any(f"{RUNS - finished} to train" in line for line in lines), lines
  assert sum(DONE in line for line in lines) == RUNS - finished
  _check_every_run_once(study_dir)
  assert _tables(study_dir) == reference


def test_two_workers_killed_driver_then_rerun_finishes_only_what_is_missing(
  reference, real_data_dir, tmp_path
):
  """--workers=2 from the command line, its driver SIGKILLed after the first finished run;
  re-run with two workers, one of them SIGKILLed too: the study holds every run once and
  the reference's numbers."""
  study_dir = tmp_path / FAMILY / STUDY
  env = dict(os.environ, JAXNETS_DATA_DIR=str(real_data_dir))
  driver = _cli(*CLI_TINY, "--workers=2", f"--workdir={tmp_path}", env=env)
  try:
    deadline = time.monotonic() + 240
    while not list(study_dir.glob("*/seed*/result.json")):
      assert driver.poll() is None, driver.communicate()[0][-3000:]
      assert time.monotonic() < deadline, "no run finished in time"
      time.sleep(0.2)
    workers = _children(driver.pid)
    assert len(workers) >= 2, workers  # the two workers (and multiprocessing's tracker)
    driver.kill()  # SIGKILL: no clean-up of any kind
  finally:
    driver.kill()
    driver.communicate()
  deadline = time.monotonic() + 20
  while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
    time.sleep(0.5)
  assert not [pid for pid in workers if _alive(pid)], "workers outlived their driver"
  finished = len(list(study_dir.glob("*/seed*/result.json")))
  assert finished < RUNS

  killed = []

  def kill_one_pool_worker():
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
      pool = [pid for pid in _children(os.getpid()) if b"spawn_main" in _cmdline(pid)]
      if pool:
        time.sleep(3.0)  # into its import of TensorFlow or its first run
        if _alive(pool[0]):
          os.kill(pool[0], signal.SIGKILL)
          killed.append(pool[0])
      time.sleep(0.2)

  killer = threading.Thread(target=kill_one_pool_worker, daemon=True)
  killer.start()
  lines = _run(tmp_path, real_data_dir, local.LocalPool(2))
  killer.join()
  assert killed, "no worker process was seen"
  assert any("executor: local, 2 worker processes" in line for line in lines)
  assert any("a worker process died" in line for line in lines), lines
  assert any(f"{RUNS - finished} to train" in line for line in lines), lines
  assert sum(DONE in line for line in lines) == RUNS - finished
  _check_every_run_once(study_dir)
  assert _tables(study_dir) == reference


# --------------------------------------------------------------- bad inputs


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize(
  "args, message",
  [
    (["--workers=0"], "--workers=0"),
    (["--executor=dask"], "--executor=dask"),
    (["--executor=ray", "--workers=2"], "--workers is for --executor=local"),
    (["--ray_address=127.0.0.1:6379"], "--ray_address only apply to --executor=ray"),
    (["--gpus_per_run=1"], "--gpus_per_run only apply to --executor=ray"),
  ],
)
def test_bad_executor_flags_are_refused_before_any_work(args, message, tmp_path):
  driver = _cli(*CLI_TINY, *args, f"--workdir={tmp_path / 'runs'}")
  output, _ = driver.communicate(timeout=120)
  assert driver.returncode != 0
  assert message in output
  assert not (tmp_path / "runs").exists()


def test_ray_missing_fails_at_once_with_the_install_command(tmp_path):
  code = (
    "import sys; sys.modules['ray'] = None; "  # as if Ray were not installed
    f"sys.argv = ['train', *{CLI_TINY!r}, '--executor=ray', '--workdir={tmp_path / 'runs'}']; "
    "from train.__main__ import run; run()"
  )
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
  )
  assert result.returncode != 0
  assert 'pip install -e ".[ray]"' in result.stderr
  assert not (tmp_path / "runs").exists()


def test_unreachable_ray_address_fails_within_seconds(tmp_path):
  pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
  address = f"127.0.0.1:{_free_port()}"
  start = time.monotonic()
  driver = _cli(*CLI_TINY, "--executor=ray", f"--ray_address={address}", f"--workdir={tmp_path}")
  output, _ = driver.communicate(timeout=120)
  seconds = time.monotonic() - start
  assert driver.returncode != 0
  assert f"cannot reach the Ray cluster at --ray_address={address}" in output
  assert "ray start --head" in output
  # Python, absl and the flag checks start up in about 2 s; the connection try is capped.
  assert seconds < ray_cluster.CONNECT_TIMEOUT_S + 15, seconds
  assert not list(tmp_path.iterdir())


def test_a_run_no_node_can_hold_is_refused(ray_instance):
  executor = ray_cluster.RayExecutor(gpus_per_run=1)
  with pytest.raises(base.ExecutorError, match="no node of the cluster has 1 CPU"):
    executor.start(lambda line: None)
  assert ray_instance.is_initialized()  # a cluster it did not start is left running


def test_choose_refuses_bad_values():
  assert choose.make("local", workers=1) is None  # the embedded path
  with pytest.raises(base.ExecutorError, match="--workers must be a positive integer"):
    choose.make("local", workers=0)
  with pytest.raises(base.ExecutorError, match="unknown executor 'dask'"):
    choose.make("dask")
