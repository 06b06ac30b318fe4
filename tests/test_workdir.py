"""The study runner's work directory: validated before any work, one process at a time."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT
from train import runner
from train import workdir as workdir_lib


def test_empty_workdir_is_refused():
  with pytest.raises(workdir_lib.WorkdirError, match=r"empty \(--workdir=\)"):
    workdir_lib.resolve("")


def test_tilde_is_expanded():
  assert workdir_lib.resolve("~/runs-x") == pathlib.Path.home().resolve() / "runs-x"


@pytest.mark.parametrize("inside", [False, True])
def test_a_file_as_workdir_is_refused(tmp_path, inside):
  target = tmp_path / "afile"
  target.write_text("x")
  path = target / "runs" if inside else target
  with pytest.raises(workdir_lib.WorkdirError, match="a file, not a folder"):
    workdir_lib.resolve(path)


@pytest.mark.parametrize(
  "workdir, message",
  [("", "work directory is empty"), ("{tmp}/afile", "a file, not a folder")],
)
def test_run_refuses_a_bad_workdir_before_loading_data(tmp_path, workdir, message):
  (tmp_path / "afile").write_text("x")
  settings = runner.Settings(data_dir=str(tmp_path / "no-data-here"))
  with pytest.raises(runner.ConfigError, match=message):
    runner.run("mlp", "all", workdir.format(tmp=tmp_path), settings)


def test_cli_refuses_an_empty_workdir_at_once():
  result = subprocess.run(
    [sys.executable, "-m", "train", "--family=mlp", "--workdir="],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert "work directory is empty" in result.stderr + result.stdout


def test_a_second_process_is_stopped_naming_the_holder(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      textwrap.dedent(f"""
        import pathlib, sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from train import workdir
        with workdir.WorkdirLock(pathlib.Path({str(tmp_path)!r})):
          print("locked", flush=True)
          time.sleep(60)
      """),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    settings = runner.Settings(data_dir=str(tmp_path / "no-data-here"))
    with pytest.raises(runner.ConfigError, match=rf"in use by process {holder.pid} on "):
      runner.run("mlp", "all", tmp_path, settings)
  finally:
    holder.kill()
    holder.wait()
  # The kernel released the killed holder's lock: the directory is free again.
  with workdir_lib.WorkdirLock(tmp_path):
    pass


def test_a_finished_run_is_never_removed(tmp_path):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / runner.RESULT_FILE).write_text("{}")
  job = type("Job", (), {"run_dir": run_dir})()
  with pytest.raises(RuntimeError, match="holds a finished run"):
    runner.train_and_check(job, dataset=None, settings=runner.Settings())
  assert (run_dir / runner.RESULT_FILE).exists()
  assert os.listdir(run_dir) == [runner.RESULT_FILE]
