"""Per-study outputs: tables (CSV + Markdown) and the loss-curve figure.

Input is the list of per-run records (the ``result.json`` of every variant and
seed) and their Keras histories. Everything is written atomically (temp file +
``os.replace``), so a reader never sees half a table or half a PNG.

Files written into a study directory:

- ``results.csv``: one row per variant, means/stds over seeds.
- ``runs.csv``: one row per (variant, seed).
- ``results.md``: what varies, settings, the per-variant table, a one-line
  reading of the numbers, the figure, the per-seed table.
- ``loss_curves.png``: training (left) and validation (right) loss per epoch,
  one colour per variant: mean over seeds with a min-max band.
- ``confusion_matrix.png``: the best variant's (highest mean macro F1) test-set
  confusion matrix, summed over its seeds, from the counts each run stored in
  ``result.json`` (``test.confusion_matrix``: rows true class, columns
  predicted). Skipped when those runs predate the stored counts.
"""

import csv
import io
import math
import os
import pathlib
import statistics
import tempfile
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers/CI
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from sklearn.metrics import ConfusionMatrixDisplay  # pylint: disable=wrong-import-position

from jaxnets import saving  # pylint: disable=wrong-import-position

CONFUSION_FILE = "confusion_matrix.png"

# Columns that measure time: they differ between two runs with equal numbers.
TIMING_COLUMNS = frozenset(
  {
    "train_time_s_mean",
    "keras_infer_s_mean",
    "port_infer_s_mean",
    "port_speedup",
    "train_time_s",
    "keras_infer_s",
    "port_infer_s",
  }
)

SUMMARY_COLUMNS = (
  "variant",
  "setting",
  "seeds",
  "macro_f1_mean",
  "macro_f1_std",
  "accuracy_mean",
  "accuracy_std",
  "epochs_mean",
  "best_epoch_mean",
  "port_macro_f1_mean",
  "agreement_pct_min",
  "max_abs_diff_max",
  "train_time_s_mean",
  "keras_infer_s_mean",
  "port_infer_s_mean",
  "port_speedup",
)
RUN_COLUMNS = (
  "variant",
  "seed",
  "macro_f1",
  "accuracy",
  "epochs_run",
  "best_epoch",
  "best_val_loss",
  "port_macro_f1",
  "agreement_pct",
  "max_abs_diff",
  "keras_f64_error",
  "port_f64_error",
  "parity_bound",
  "train_time_s",
  "keras_infer_s",
  "port_infer_s",
)


def summarize(
  variants: Sequence[tuple[str, str]], records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
  """Per-variant aggregates over seeds, in ``variants`` order.

  Args:
    variants: ``(variant name, setting description)`` pairs, in study order.
    records: run records (``result.json`` contents) with keys ``variant``,
      ``seed``, ``test`` (metrics dict), ``train`` (epochs, times).
  Variants without any record are left out (a partial report).
  """
  rows = []
  for name, setting in variants:
    runs = [r for r in records if r["variant"] == name]
    if not runs:
      continue
    f1 = [r["test"]["keras_macro_f1"] for r in runs]
    acc = [r["test"]["keras_accuracy"] for r in runs]
    keras_s = _mean([r["test"]["keras_infer_s"] for r in runs])
    port_s = _mean([r["test"]["port_infer_s"] for r in runs])
    rows.append(
      {
        "variant": name,
        "setting": setting,
        "seeds": len(runs),
        "macro_f1_mean": _mean(f1),
        "macro_f1_std": _std(f1),
        "accuracy_mean": _mean(acc),
        "accuracy_std": _std(acc),
        "epochs_mean": _mean([r["train"]["epochs_run"] for r in runs]),
        "best_epoch_mean": _mean([r["train"]["best_epoch"] for r in runs]),
        "port_macro_f1_mean": _mean([r["test"]["port_macro_f1"] for r in runs]),
        "agreement_pct_min": min(r["test"]["agreement_pct"] for r in runs),
        "max_abs_diff_max": max(r["test"]["max_abs_diff"] for r in runs),
        "train_time_s_mean": _mean([r["train"]["train_time_s"] for r in runs]),
        "keras_infer_s_mean": keras_s,
        "port_infer_s_mean": port_s,
        "port_speedup": keras_s / port_s if port_s > 0 else math.nan,
        "macro_f1_values": f1,  # per seed; not a CSV column (for the t-test)
      }
    )
  return rows


def run_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One flat row per run record."""
  return [
    {
      "variant": r["variant"],
      "seed": r["seed"],
      "macro_f1": r["test"]["keras_macro_f1"],
      "accuracy": r["test"]["keras_accuracy"],
      "epochs_run": r["train"]["epochs_run"],
      "best_epoch": r["train"]["best_epoch"],
      "best_val_loss": r["train"]["best_val_loss"],
      "port_macro_f1": r["test"]["port_macro_f1"],
      "agreement_pct": r["test"]["agreement_pct"],
      "max_abs_diff": r["test"]["max_abs_diff"],
      # The parity rule's figures (port.compare); absent from records written
      # before the rule existed.
      "keras_f64_error": r["test"].get("keras_f64_error", ""),
      "port_f64_error": r["test"].get("port_f64_error", ""),
      "parity_bound": r["test"].get("parity_bound", ""),
      "train_time_s": r["train"]["train_time_s"],
      "keras_infer_s": r["test"]["keras_infer_s"],
      "port_infer_s": r["test"]["port_infer_s"],
    }
    for r in records
  ]


def verdict(rows: Sequence[Mapping[str, Any]]) -> str:
  """A short reading: the best variant, its margin over the runner-up, whether
  the margin exceeds the seed-to-seed standard deviation of the two, and
  Welch's t-test p-value for the two variants' per-seed macro F1."""
  if not rows:
    return "No finished variants yet."
  if len(rows) == 1:
    r = rows[0]
    return (
      f"{r['variant']}: macro F1 {_pm(r['macro_f1_mean'], r['macro_f1_std'])}, "
      f"accuracy {100 * r['accuracy_mean']:.2f}%."
    )
  ranked = sorted(rows, key=lambda r: -r["macro_f1_mean"])
  best, second = ranked[0], ranked[1]
  gap = best["macro_f1_mean"] - second["macro_f1_mean"]
  stds = [s for s in (best["macro_f1_std"], second["macro_f1_std"]) if not math.isnan(s)]
  text = (
    f"Best macro F1: **{best['variant']}** "
    f"({_pm(best['macro_f1_mean'], best['macro_f1_std'])}), {gap:.3f} above "
    f"{second['variant']} ({_pm(second['macro_f1_mean'], second['macro_f1_std'])}). "
  )
  if not stds:
    return text + "One seed only: the seed-to-seed spread is unknown, so the gap may be noise."
  spread = max(stds)
  if gap > 2 * spread:
    text += f"The gap is more than twice the larger seed-to-seed std ({spread:.3f})."
  elif gap > spread:
    text += (
      f"The gap exceeds the larger seed-to-seed std ({spread:.3f}) but by less "
      "than a factor of two: suggestive, not conclusive."
    )
  else:
    text += (
      f"The gap is within the seed-to-seed std ({spread:.3f}): the two are not "
      "distinguishable with these seeds."
    )
  a, b = best.get("macro_f1_values", []), second.get("macro_f1_values", [])
  if len(a) > 1 and len(b) > 1 and (_std(a) > 0 or _std(b) > 0):
    from scipy import stats  # pylint: disable=import-outside-toplevel

    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    text += f" Welch's t-test over seeds: p = {p:.2g}."
  return text


def write_study(
  study_dir: os.PathLike,
  *,
  title: str,
  varies: str,
  variants: Sequence[tuple[str, str]],
  records: Sequence[Mapping[str, Any]],
  histories: Mapping[tuple[str, int], Mapping[str, Sequence[float]]],
  settings: Mapping[str, Any],
  class_names: Sequence[str] = (),
  loss_label: str = "sparse categorical cross-entropy",
  runs_total: int | None = None,
) -> dict[str, pathlib.Path]:
  """Writes results.csv, runs.csv, results.md, loss_curves.png and
  confusion_matrix.png into ``study_dir``.

  Args:
    study_dir: the study's output directory.
    title: heading of the Markdown report.
    varies: what the study changes.
    variants: ``(name, setting)`` pairs in study order.
    records: run records (see :func:`summarize`).
    histories: ``{(variant, seed): {"loss": [...], "val_loss": [...]}}``.
    settings: ``{label: value}`` listed under the heading (base config,
      recipe, data sizes, versions...).
    class_names: the labels' names by class index (the confusion matrix's
      axes); class indices when empty.
    loss_label: the loss curves' y-axis label (what the runs minimised).
    runs_total: runs the study has (variants x seeds); with fewer records
      the report is marked partial (it is written after each variant).
  Returns:
    ``{"csv": path, "runs_csv": path, "md": path, "png": path}``, plus
    ``"confusion": path`` when the best variant's runs stored their counts.
  """
  study_dir = pathlib.Path(study_dir)
  rows = summarize(variants, records)
  paths = {
    "csv": study_dir / "results.csv",
    "runs_csv": study_dir / "runs.csv",
    "md": study_dir / "results.md",
    "png": study_dir / "loss_curves.png",
  }
  atomic_write(paths["csv"], _csv_bytes(SUMMARY_COLUMNS, rows))
  atomic_write(paths["runs_csv"], _csv_bytes(RUN_COLUMNS, run_rows(records)))
  atomic_write(paths["png"], _figure_bytes(title, variants, histories, loss_label))
  confusion_path = study_dir / CONFUSION_FILE
  best = best_confusion(rows, records)
  if best is None:
    # No stale figure of an earlier best variant may outlive the table.
    _unlink_quietly(os.fspath(confusion_path))
  else:
    paths["confusion"] = confusion_path
    atomic_write(confusion_path, _confusion_bytes(title, *best, class_names))
  done = len({r["variant"] for r in records})
  atomic_write(
    paths["md"],
    _markdown(
      title,
      varies,
      rows,
      run_rows(records),
      settings,
      done,
      len(variants),
      confusion_variant=None if best is None else best[0],
      runs_total=runs_total,
    ).encode("utf-8"),
  )
  return paths


def best_confusion(
  rows: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
) -> tuple[str, np.ndarray, int] | None:
  """``(variant, counts, seeds)``: the best variant's test-set confusion matrix.

  The best variant has the highest mean macro F1 (as in :func:`verdict`); its
  per-seed matrices (``int (classes, classes)``, rows true class, columns
  predicted) are summed. ``None`` when there are no rows, or when any of its
  runs has no stored matrix (a ``result.json`` written before they were kept).
  """
  if not rows:
    return None
  best = max(rows, key=lambda r: r["macro_f1_mean"])["variant"]
  runs = [r for r in records if r["variant"] == best]
  matrices = [r["test"].get("confusion_matrix") for r in runs]
  if not matrices or any(m is None for m in matrices):
    return None
  return best, np.sum([np.asarray(m, np.int64) for m in matrices], axis=0), len(matrices)


def read_csv(path: os.PathLike) -> list[dict[str, str]]:
  """Rows of a CSV written here, as strings."""
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def atomic_write(path: pathlib.Path, payload: bytes) -> None:
  """Writes ``payload`` to a temp file beside ``path``, then renames it over ``path``."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    os.fchmod(fd, 0o666 & ~saving.current_umask())  # mkstemp's 0600 would outlive the rename
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
    os.replace(tmp, path)
  except BaseException:
    _unlink_quietly(tmp)
    raise


# -------------------------------------------------------------------- internals


def _mean(values: Sequence[float]) -> float:
  return float(statistics.fmean(values)) if values else math.nan


def _std(values: Sequence[float]) -> float:
  """Sample standard deviation (ddof=1); NaN for a single seed."""
  return float(statistics.stdev(values)) if len(values) > 1 else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """(mean, sample std; NaN std from one value), as the study tables compute them."""
  return _mean(values), _std(values)


def _pm(mean: float, std: float) -> str:
  return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def _csv_value(value: Any) -> Any:
  if isinstance(value, float):
    return "" if math.isnan(value) else repr(value)
  return value


def _csv_bytes(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> bytes:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _csv_value(row[k]) for k in columns})
  return buffer.getvalue().encode("utf-8")


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
  out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  out += ["| " + " | ".join(line) + " |" for line in lines]
  return "\n".join(out)


def _seconds(value: float) -> str:
  return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _markdown(
  title, varies, rows, runs, settings, done, total, confusion_variant=None, runs_total=None
) -> str:
  parts = [f"# {title}", ""]
  if runs_total is not None and len(runs) < runs_total:
    # Counted in runs: every variant may have a seed while other seeds are missing.
    parts += [
      f"**Partial report: {len(runs)} of {runs_total} runs finished "
      f"({done} of {total} variants have results).**",
      "",
    ]
  parts += [f"Varies: **{varies}**; everything else is the family's base config.", ""]
  parts += [f"- {label}: {value}" for label, value in settings.items()]
  parts += [
    "",
    "Test-set metrics (Keras model; mean ± sample std over seeds). The port "
    "columns come from `port.load` of the saved `.keras` file predicting the same "
    "test set: agreement is the share of identical predicted classes (the run "
    "fails below 100%), max diff the largest absolute probability difference. "
    "Inference times are for the whole test set, after one warm-up pass.",
    "",
  ]
  header = [
    "variant",
    "setting",
    "seeds",
    "macro F1",
    "accuracy %",
    "epochs (best)",
    "train s",
    "port F1",
    "agreement %",
    "max diff",
    "Keras infer s",
    "port infer s",
    "speed-up",
  ]
  lines = []
  for r in rows:
    acc_std = r["accuracy_std"]
    acc = (
      f"{100 * r['accuracy_mean']:.2f}"
      if math.isnan(acc_std)
      else f"{100 * r['accuracy_mean']:.2f} ± {100 * acc_std:.2f}"
    )
    lines.append(
      [
        r["variant"],
        r["setting"],
        str(r["seeds"]),
        _pm(r["macro_f1_mean"], r["macro_f1_std"]),
        acc,
        f"{r['epochs_mean']:.1f} ({r['best_epoch_mean']:.1f})",
        _seconds(r["train_time_s_mean"]),
        f"{r['port_macro_f1_mean']:.3f}",
        f"{r['agreement_pct_min']:.2f}",
        f"{r['max_abs_diff_max']:.1e}",
        f"{r['keras_infer_s_mean']:.3f}",
        f"{r['port_infer_s_mean']:.3f}",
        f"{r['port_speedup']:.1f}x",
      ]
    )
  parts += [
    _table(header, lines),
    "",
    verdict(rows),
    "",
    "![training and validation loss per epoch](loss_curves.png)",
    "",
  ]
  if confusion_variant is not None:
    parts += [
      f"![test-set confusion matrix of {confusion_variant}, summed over seeds]({CONFUSION_FILE})",
      "",
    ]
  parts += [
    "<details><summary>Per-seed runs</summary>",
    "",
  ]
  seed_header = [
    "variant",
    "seed",
    "macro F1",
    "accuracy %",
    "epochs",
    "best epoch",
    "best val loss",
    "port F1",
    "agreement %",
    "max diff",
    "Keras/port to f64",
    "parity bound",
    "train s",
  ]
  seed_lines = [
    [
      r["variant"],
      str(r["seed"]),
      f"{r['macro_f1']:.4f}",
      f"{100 * r['accuracy']:.2f}",
      str(r["epochs_run"]),
      str(r["best_epoch"]),
      f"{r['best_val_loss']:.4f}",
      f"{r['port_macro_f1']:.4f}",
      f"{r['agreement_pct']:.2f}",
      f"{r['max_abs_diff']:.1e}",
      _f64_errors(r),
      _optional(r["parity_bound"]),
      _seconds(r["train_time_s"]),
    ]
    for r in runs
  ]
  parts += [_table(seed_header, seed_lines), "", "</details>", ""]
  return "\n".join(parts)


def _figure_bytes(title, variants, histories, loss_label) -> bytes:
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for index, (name, _) in enumerate(variants):
    runs = [h for (variant, _), h in sorted(histories.items()) if variant == name]
    if not runs:
      continue
    color = colors[index % len(colors)]
    for ax, key in zip(axes, ("loss", "val_loss")):
      curves = [list(h.get(key, [])) for h in runs if h.get(key)]
      if not curves:
        continue
      longest = max(len(c) for c in curves)
      epochs, mean, low, high = [], [], [], []
      for e in range(longest):
        values = [c[e] for c in curves if e < len(c)]
        epochs.append(e + 1)
        mean.append(statistics.fmean(values))
        low.append(min(values))
        high.append(max(values))
      ax.plot(epochs, mean, color=color, marker=".", label=f"{name} ({len(curves)} seeds)")
      if len(curves) > 1:
        ax.fill_between(epochs, low, high, color=color, alpha=0.15, linewidth=0)
  for ax, label in zip(axes, ("training loss", "validation loss")):
    ax.set_title(label)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
  axes[0].set_ylabel(loss_label)
  axes[1].legend(loc="best", fontsize="small")
  fig.suptitle(
    f"{title}: mean over seeds, band = min-max over seeds "
    "(seeds that stopped early drop out of later epochs)",
    fontsize="medium",
  )
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  return buffer.getvalue()


def _confusion_bytes(title, variant, counts, seeds, class_names) -> bytes:
  labels = list(class_names) if len(class_names) == len(counts) else list(range(len(counts)))
  size = max(4.5, 0.55 * len(counts) + 2.5)
  fig, ax = plt.subplots(figsize=(size, size))
  ConfusionMatrixDisplay(counts, display_labels=labels).plot(
    ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45 if len(counts) > 5 else 0
  )
  seed_text = f"{seeds} seeds summed" if seeds > 1 else "1 seed"
  ax.set_title(f"{title}\nbest variant {variant}: test set, {seed_text}", fontsize="medium")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  return buffer.getvalue()


def _unlink_quietly(path: str) -> None:
  try:
    os.unlink(path)
  except OSError:
    pass


def _optional(value) -> str:
  """A figure a record may lack (records older than the parity rule): ``—`` then."""
  return "—" if value in ("", None) else f"{float(value):.1e}"


def _f64_errors(row) -> str:
  """Keras's and the port's distance from the float64 reference, ``K / P``."""
  return f"{_optional(row['keras_f64_error'])} / {_optional(row['port_f64_error'])}"
