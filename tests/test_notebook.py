"""The Colab notebook runs top to bottom (on CPU, with small settings).

``notebooks/jaxnets_colab.ipynb`` is executed with nbclient in a fresh kernel
from the repository root, with the overrides below injected as a cell right
after the one tagged ``parameters`` (papermill's convention): no install, the
local data copies, one epoch on a few rows, a tiny speed check. Any cell that
raises fails the test, so a broken notebook fails the build.
"""

import nbformat
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
