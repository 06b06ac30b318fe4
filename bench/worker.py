"""A benchmark system in a process of its own: ``python -m bench.worker MODE SPEC``.

Two modes, ``SPEC`` a JSON object naming the system and its saved model:

- ``serve``: a system the parent cannot run in its own process (``keras_jax``:
  the Keras backend is chosen per process). Reads one JSON request per line on
  stdin (``ready``, ``prepare``, ``run``, ``quit``), answers one JSON line each.
- ``memory``: peak memory of the system in a fresh process: import, load, one
  pass at the batch size; answers one JSON line.

The parent puts what the process needs in its environment (``KERAS_BACKEND``);
this module imports only ``bench.systems`` and, through it, the framework of
the one system it runs.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import frameworks
from bench import systems


def measure_memory(name: str, assets: systems.Assets, inputs_path: str, batch_size: int) -> dict:
  """Peak memory of system ``name`` on ``inputs_path`` (run in the parent)."""
  env = {**os.environ, **systems.WORKER_ENV.get(name, {})}
  spec = {"system": name, "assets": assets.paths(), "inputs": inputs_path, "batch_size": batch_size}
  done = subprocess.run(
    systems.worker_command("memory", spec),
    capture_output=True,
    text=True,
    cwd=systems.REPO_ROOT,
    env=env,
    check=False,
  )
  lines = done.stdout.strip().splitlines()
  reply = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
  if "error" in reply:
    return {"error": reply["error"][-500:]}
  return reply


def main(argv: list[str]) -> None:
  mode, spec_json = argv[1:]
  spec = json.loads(spec_json)
  # The protocol owns the real stdout; anything a library prints goes to stderr.
  protocol = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)

  def reply(message):
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()

  name = spec["system"]
  if mode == "memory":
    try:
      reply(_memory_probe(name, spec))
    except Exception as e:  # pylint: disable=broad-except
      reply({"error": f"{type(e).__name__}: {e}"})
    return
  if mode != "serve":
    raise SystemExit(f"unknown worker mode {mode!r} (serve, memory)")
  _serve(
    systems.make_system(
      name,
      systems.Assets(**spec["assets"]),
      tempfile.mkdtemp(prefix="bench-worker-"),
      in_worker=True,
    ),
    reply,
  )


def _serve(system: systems.System, reply) -> None:
  runners = {}
  for line in sys.stdin:
    message = json.loads(line)
    try:
      op = message["op"]
      if op == "quit":
        break
      if op == "ready":
        system.setup()
        reply({"ok": True})
      elif op == "prepare":
        runners[message["key"]] = system.runner(np.load(message["path"]), message["batch_size"])
        reply({"ok": True})
      elif op == "run":
        start = time.perf_counter()
        out = runners[message["key"]]()
        seconds = time.perf_counter() - start
        if message.get("out"):
          np.save(message["out"], np.asarray(out))
        reply({"seconds": seconds})
      else:
        reply({"error": f"unknown op {op!r}"})
    except Exception as e:  # pylint: disable=broad-except
      reply({"error": f"{type(e).__name__}: {e}"})


def _import_for(name: str) -> None:
  """Imports the frameworks ``name`` runs on, so that the memory baseline holds them."""
  if name.startswith("port"):
    import jaxnets  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import

    frameworks.jax()
  elif name == "onnxruntime":
    import onnxruntime  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
  else:
    frameworks.keras()
    if name == "tf2jax":
      import tf2jax  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import


def _memory_probe(name: str, spec: dict) -> dict:
  """Peak RSS of this fresh process: import, load, one pass at the batch size."""
  _import_for(name)
  rss_after_import = _proc_status_mb("VmRSS")
  system = systems.make_system(
    name, systems.Assets(**spec["assets"]), tempfile.mkdtemp(), in_worker=True
  )
  system.setup()
  system.runner(np.load(spec["inputs"]), spec["batch_size"])()
  peak = _proc_status_mb("VmHWM")
  return {
    "peak_rss_mb": peak,
    "rss_after_import_mb": rss_after_import,
    "peak_minus_import_mb": peak - rss_after_import,
    "accelerator_peak_mb": _accelerator_peak_mb(),
  }


def _proc_status_mb(field: str) -> float:
  """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MiB.

  Not ``getrusage``'s ``ru_maxrss``: Linux carries it over ``fork``/``exec``,
  so a child would report its parent's peak. ``VmHWM`` belongs to the address
  space that ``exec`` creates fresh.
  """
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024  # kB
  raise RuntimeError(f"no {field} in /proc/self/status")


def _accelerator_peak_mb() -> float | None:
  """Peak accelerator memory of this process (None on CPU-only runs)."""
  peaks = []
  if "jax" in sys.modules:
    jax = sys.modules["jax"]
    for device in jax.local_devices():
      stats = device.memory_stats() if device.platform != "cpu" else None
      if stats and "peak_bytes_in_use" in stats:
        peaks.append(stats["peak_bytes_in_use"] / 2**20)
  if "tensorflow" in sys.modules:
    tf = sys.modules["tensorflow"]
    for device in tf.config.list_logical_devices("GPU"):
      peaks.append(tf.config.experimental.get_memory_info(device.name)["peak"] / 2**20)
  return sum(peaks) if peaks else None


if __name__ == "__main__":
  main(sys.argv)
