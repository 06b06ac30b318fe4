"""``python -m build`` makes a wheel that installs into a fresh venv and runs.

The wheel is built from a copy of the tree's packaged files (so the checkout is
left as it was), installed with ``--no-deps`` into a new venv whose heavy
dependencies come from this interpreter's site-packages (a ``.pth`` file written
after the install, holding plain paths, so this environment's editable install
of the project is *not* picked up), and smoke-tested from outside the repository: every package
imports from the venv's own site-packages and the console scripts answer
``--help`` with exit code 0. BUILD.md ("Packaging") shows the same by hand.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from tests.conftest import REPO_ROOT

PACKAGES = ("jaxnets", "port", "train", "bench", "flags")
SCRIPTS = ("jaxnets-port", "jaxnets-predict", "jaxnets-train", "jaxnets-bench", "jaxnets-smoke")


def _run(command, cwd, timeout=300):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  done = subprocess.run(
    [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
  )
  assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
  return done.stdout


def test_wheel_builds_installs_and_runs_in_a_fresh_venv(tmp_path):
  source = tmp_path / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO_ROOT / name, source / name)
  for package in PACKAGES:
    shutil.copytree(
      REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
    )
  dist = tmp_path / "dist"
  _run([sys.executable, "-m", "build", "--outdir", dist, source], cwd=tmp_path)
  [wheel] = dist.glob("jaxnets-*-py3-none-any.whl")
  assert len(list(dist.glob("jaxnets-*.tar.gz"))) == 1
  with zipfile.ZipFile(wheel) as archive:
    tops = {name.split("/")[0] for name in archive.namelist()}
    [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = archive.read(metadata).decode()
  assert {*PACKAGES} <= tops and "tests" not in tops
  for field in ("License-Expression:", "Author:", "Project-URL:", "Classifier:", "Keywords:"):
    assert field in metadata, f"wheel metadata lacks {field}"

  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
  bin_dir = venv / "bin"
  python = bin_dir / "python"
  site = pathlib.Path(
    _run(
      [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    ).strip()
  )
  _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp_path)
  # Only after the install: pip must not see (and offer to replace) this environment's jaxnets.
  reused = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
  (site / "reuse_test_env.pth").write_text("".join(f"{path}\n" for path in reused))

  where = _run(
    [python, "-c", "import jaxnets, port, train, bench, flags as f; print(jaxnets.__file__)"],
    cwd=tmp_path,
  )
  assert pathlib.Path(where.strip()).is_relative_to(site)
  for script in SCRIPTS:
    assert (bin_dir / script).is_file(), f"{script} not installed"
  # Installed scripts show the command's docstring and its own flags (absl alone
  # would print a bare usage line for a console script), and exit 0.
  key_flags = {
    "jaxnets-predict": "--input",
    "jaxnets-port": "--check_inputs",
    "jaxnets-train": "--family",
    "jaxnets-bench": "--preset",
  }
  for script, flag in key_flags.items():
    assert flag in _run([bin_dir / script, "--help"], cwd=tmp_path), script
