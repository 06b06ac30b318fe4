"""``python -m bench --preset=device_check`` (bench/device_check.py): its CPU half, end to end.

On a CPU every check that needs no GPU runs (at the CPU's small sizes, about 2 minutes on 2
cores) and ``cross_backend`` is skipped; the report's schema is what GPU users and CI read.
Speed figures are reported, not asserted (they are measured, as everywhere in bench/), except
that the command's exit status must agree with the checks' outcomes.
"""

import json
import math
import os
import subprocess
import sys

import jax
import pytest

from bench import device_check
from tests.conftest import REPO_ROOT

CHECK_KEYS = {"name", "passed", "status", "figure", "figure_is", "note", "details", "seconds"}
# Checks whose outcome is a correctness claim: on a CPU they must pass.
CORRECTNESS = ("cuda_lowering", "cnn_parity", "lstm_parity", "mlp_parity", "runner_smoke")


def _bench(*args, cwd=REPO_ROOT, timeout=600):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
  return subprocess.run(
    [sys.executable, "-m", "bench", "--preset=device_check", *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


@pytest.fixture(scope="module")
def cpu_report(real_data_dir, tmp_path_factory):
  if jax.default_backend() != "cpu":
    pytest.skip("the CPU half is checked on a CPU; on a GPU run the command itself")
  json_out = tmp_path_factory.mktemp("device_check") / "device_check_cpu.json"
  done = _bench(f"--json_out={json_out}", f"--data_dir={real_data_dir}")
  assert json_out.is_file(), done.stderr[-3000:]
  report = json.loads(json_out.read_text())
  return done, report, json_out


def test_the_report_has_the_schema(cpu_report):
  _, report, _ = cpu_report
  assert set(report) >= {"backend", "devices", "versions", "precision", "checks"}
  assert report["backend"] == "cpu"
  assert report["devices"] and all({"id", "platform", "kind"} <= set(d) for d in report["devices"])
  assert report["versions"]["jax"] == jax.__version__ and report["versions"]["tensorflow"]
  assert report["precision"]["mode"] == "parity"
  assert report["precision"]["jax_float32_matmuls"] == "float32"
  assert report["precision"]["tensorflow_float32_matmuls"] == "float32"
  assert [c["name"] for c in report["checks"]] == list(device_check.CHECKS)
  for check in report["checks"]:
    assert set(check) == CHECK_KEYS, check["name"]
    assert check["status"] in ("passed", "failed", "skipped")
    assert check["passed"] == {"passed": True, "failed": False, "skipped": None}[check["status"]]
    assert isinstance(check["note"], str) and check["note"]
    if check["status"] != "skipped":
      assert isinstance(check["figure"], (int, float)) and math.isfinite(check["figure"])
      assert check["figure_is"]


def test_the_cpu_half_passes_and_skips_only_what_needs_a_gpu(cpu_report):
  done, report, _ = cpu_report
  checks = {c["name"]: c for c in report["checks"]}
  assert checks["cross_backend"]["status"] == "skipped"
  assert "backend is cpu" in checks["cross_backend"]["note"]
  for name in CORRECTNESS:
    assert checks[name]["status"] == "passed", checks[name]["note"]
  for name in ("cnn_parity", "lstm_parity", "mlp_parity"):
    assert checks[name]["figure"] <= 1e-5, checks[name]["note"]
    assert set(checks[name]["details"]) >= {"1", "7", "256"}
  assert checks["cuda_lowering"]["figure"] == 0
  assert "real lengths 0..64" in checks["lstm_parity"]["note"]
  for name in ("inference_speed", "train_speed"):
    assert checks[name]["status"] in ("passed", "failed"), checks[name]["note"]
  speed = checks["inference_speed"]["details"]
  assert set(speed) == {"cnn", "lstm", "mlp"}
  for per_model in speed.values():
    assert set(per_model) == {"1", "256"}
    for timed in per_model.values():
      assert set(timed["median_s"]) == {
        "keras_predict",
        "port_predict",
        "port_on_device",
        "host_to_device",
      }
  failed = [c["name"] for c in report["checks"] if c["status"] == "failed"]
  assert done.returncode == (1 if failed else 0), done.stderr[-3000:]


def test_the_markdown_sits_beside_the_json(cpu_report):
  done, report, json_out = cpu_report
  markdown = json_out.with_suffix(".md").read_text()
  assert markdown.startswith("# Device check: cpu")
  for check in report["checks"]:
    assert f"| {check['name']} | {check['status']} |" in markdown
  assert str(json_out) in done.stdout


def test_require_gpu_stops_with_one_line_on_a_cpu(tmp_path):
  if jax.default_backend() == "gpu":
    pytest.skip("this machine has a GPU")
  done = _bench("--require_gpu", cwd=tmp_path, timeout=300)
  assert done.returncode == 1
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "--require_gpu" in errors[0] and "'cpu'" in errors[0], done.stderr
  assert "device_check:" not in done.stderr  # no check started
  assert not (tmp_path / "results").exists()


def test_require_gpu_is_refused_by_other_presets():
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  done = subprocess.run(
    [sys.executable, "-m", "bench", "--preset=speedcheck", "--require_gpu"],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert done.returncode != 0
  assert "not read by --preset=speedcheck: --require_gpu" in done.stderr


def test_checks_that_read_data_skip_when_it_is_not_here(tmp_path, monkeypatch):
  """A device check never downloads: without a data directory or cache the data checks skip."""
  monkeypatch.delenv("JAXNETS_DATA_DIR", raising=False)
  monkeypatch.setenv("JAXNETS_CACHE_DIR", str(tmp_path / "empty_cache"))
  ctx = device_check.Context(None, 0, lambda line: None)
  for check in (device_check.check_runner_smoke(ctx), device_check.check_train_speed(ctx)):
    assert check.status == device_check.SKIPPED and check.record()["passed"] is None
    assert "--data_dir" in check.note


def test_a_check_that_raises_fails_alone(monkeypatch):
  def broken(ctx):
    raise RuntimeError("no such kernel\nsecond line")

  monkeypatch.setitem(device_check._RUNNERS, "mlp_parity", broken)
  ctx = device_check.Context(None, 0, lambda line: None)
  check = device_check.run_check(ctx, "mlp_parity")
  assert check.status == device_check.FAILED
  assert check.note == "raised RuntimeError: no such kernel"
  assert "traceback" in check.details and check.seconds >= 0
