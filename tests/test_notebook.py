"""The Colab notebook runs top to bottom (on CPU, with small settings).

``notebooks/jaxnets_colab.ipynb`` is executed with nbclient in a fresh kernel
from the repository root, with the overrides below injected as a cell right
after the one tagged ``parameters`` (papermill's convention): no install, the
local data copies, one epoch on a few rows, a tiny speed check. Any cell that
raises fails the test, so a broken notebook fails the build.
"""

import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "jaxnets_colab.ipynb"
TIMEOUT_S = 300  # per cell


def _overrides(data_dir, workdir) -> str:
  return "\n".join(
    [
      "# Injected by tests/test_notebook.py",
      "INSTALL = False",
      f"DATA_DIR = {str(data_dir)!r}",
      "EPOCHS = 1",
      "MAX_TRAIN_ROWS = 100",
      "MAX_TEST_ROWS = 50",
      f"WORKDIR = {str(workdir)!r}",
      "BENCH_MODELS = 'mlp'",
      "BENCH_NUM_INPUTS = 256",
      "BENCH_REPEATS = 2",
      "BENCH_LATENCY_REPEATS = 3",
    ]
  )


def test_notebook_has_a_parameters_cell_first():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert "parameters" in code[0].metadata.get("tags", [])
  for name in ("INSTALL", "MAX_TRAIN_ROWS", "EPOCHS", "DATA_DIR", "BENCH_NUM_INPUTS"):
    assert f"{name} = " in code[0].source


def test_notebook_runs_top_to_bottom(real_data_dir, tmp_path):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  index = next(
    i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])
  )
  injected = nbformat.v4.new_code_cell(_overrides(real_data_dir, tmp_path / "runs"))
  injected.metadata["tags"] = ["injected-parameters"]
  notebook.cells.insert(index + 1, injected)
  client = NotebookClient(
    notebook,
    timeout=TIMEOUT_S,
    kernel_name="python3",
    resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}},
  )
  client.execute()

  outputs = "".join(
    out.get("text", "") + "".join(out.get("data", {}).get("text/plain", ""))
    for cell in notebook.cells
    if cell.cell_type == "code"
    for out in cell.get("outputs", [])
  )
  assert "agreement 100.00%" in outputs
  assert "saved and reloaded: same outputs" in outputs
  displayed = [
    kind
    for cell in notebook.cells
    if cell.cell_type == "code"
    for out in cell.get("outputs", [])
    for kind in out.get("data", {})
  ]
  assert "image/png" in displayed and "text/markdown" in displayed
  assert (tmp_path / "runs" / "speedcheck.json").is_file()
  assert (tmp_path / "runs" / "ported_model").is_dir()


def _install_cell() -> str:
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  return next(
    c.source for c in notebook.cells if c.cell_type == "code" and "REPO_URL still" in c.source
  )


@pytest.mark.parametrize(
  "repo_url, wheel, error",
  [
    (
      "https://github.com/<owner>/jaxnets",
      None,
      "RuntimeError: REPO_URL still names the placeholder <owner>: set it in the first code cell",
    ),
    ("file://{tmp}/no/such/jaxnets", None, "RuntimeError: REPO_URL='file://{tmp}/no/such/jaxnets'"),
    ("", "uploaded/jaxnets.whl", "FileNotFoundError: WHEEL='uploaded/jaxnets.whl' is no file here"),
    (
      "",
      "{tmp}/bogus.whl",
      "RuntimeError: pip could not install jaxnets beside this runtime's jax==",
    ),
  ],
  ids=["placeholder", "unreachable", "no-wheel", "bad-wheel"],
)
def test_the_install_cell_stops_with_one_readable_sentence(tmp_path, repo_url, wheel, error):
  """As a Colab user would run it (INSTALL=True, away from a checkout): a REPO_URL left at its
  placeholder or unreachable, or a wheel that is missing or broken, stops the notebook at once
  with one line saying what to set. Nothing here needs the network."""
  (tmp_path / "bogus.whl").write_text("not a wheel")
  settings = {"INSTALL": True, "REPO_URL": repo_url.format(tmp=tmp_path), "WHEEL": wheel}
  if wheel:
    settings["WHEEL"] = wheel.format(tmp=tmp_path)
  code = "".join(f"{k} = {v!r}\n" for k, v in settings.items()) + _install_cell()
  proc = subprocess.run(
    [sys.executable, "-c", code],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(error.format(tmp=tmp_path)), proc.stderr[-2000:]
  assert last.endswith("."), last
  assert not (tmp_path / "jaxnets").exists()  # nothing cloned
