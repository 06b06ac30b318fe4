"""Runs the studies: train every variant/seed in Keras, check it against its port,
write the study reports. This is what ``python -m train`` calls.

Work directory layout (one directory per run, one per study)::

    <workdir>/<family>/<study>/results.{md,csv}, runs.csv, loss_curves.png,
                                confusion_matrix.png
    <workdir>/<family>/<study>/<variant>/seed<k>/model.keras     the trained model
                                                /history.json    per-epoch loss/accuracy
                                                /result.json     written LAST, atomically

Resume: a run whose ``result.json`` exists (with the same settings) is done and
skipped; a run directory without it (killed mid-run) is wiped and redone, so
nothing is ever half-counted. A variant equal to one already trained with the
same settings in another study of the family (the base config) is copied, not
retrained: runs are keyed by a hash of everything that determines their numbers.

Reproducibility: each run starts from ``keras.utils.set_random_seed(seed)``
after ``keras.backend.clear_session()``, with TensorFlow op determinism on, so
re-running a run gives the same weights and the same table.

Where runs train: here, one after another (the default), or through an
executor (:mod:`train.executors`: worker processes, Ray tasks), which returns
each run's files for this process to write into the same layout.
"""

import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import shutil
import statistics
import time
from typing import Any, Callable

import keras
import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

import port
from train import data as data_lib
from train import fitting
from train import keras_inputs
from train import models
from train.executors import base as executors_base
from train import recipes
from train import report
from train import studies
from train import tensorboard_logs
from train import workdir as workdir_lib

RESULT_FILE = "result.json"
HISTORY_FILE = "history.json"
MODEL_FILE = "model.keras"
PORT_FAILURE_FILE = "port_check_failed.json"
PREDICT_BATCH = 256
MNIST_VALIDATION_SPLIT = 0.2


TRAINERS = ("keras", "jax")


class PortMismatchError(RuntimeError):
  """The ported model does not reproduce the Keras model's predictions."""


class SettingsMismatchError(RuntimeError):
  """The work directory holds finished runs made with different settings."""


class ConfigError(ValueError):
  """A request that cannot run as given (found before any work starts)."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a study run needs besides family/study/workdir (the CLI flags).

  Attributes:
    seeds: number of seeds per variant: ``seed, seed + 1, ..., seed + seeds - 1``.
    seed: the first seed (also seeds the CIFAR-10 train/val split).
    epochs, patience, batch_size, monitor: override the family recipe when not None.
    lang: NusaX-Senti language (text families).
    max_train_rows: keep at most this many training rows and at most this many
      validation rows (a fixed random subset); None keeps all.
    max_test_rows: the same for the test set.
    data_dir: dataset directory (None: ``JAXNETS_DATA_DIR`` / download cache).
    verbose: Keras ``fit`` verbosity (2: one line per epoch, 0: silent).
    timing_repeats: timed inference passes per system (after one warm-up).
    trainer: ``"keras"`` (Keras ``fit``, the reference) or ``"jax"`` (the
      jaxnets layers trained by :mod:`train.jax_trainer`; the trained model is
      turned back into Keras with ``port.to_keras`` and checked the same way).
    tensorboard: also write per-epoch loss, accuracy, validation loss and
      accuracy and the learning rate to ``<run_dir>/tb/`` as training goes
      (:mod:`train.tensorboard_logs`); not part of the run key.
  """

  seeds: int = 3
  seed: int = 0
  epochs: int | None = None
  patience: int | None = None
  batch_size: int | None = None
  monitor: str | None = None
  lang: str = "indonesian"
  max_train_rows: int | None = None
  max_test_rows: int | None = None
  data_dir: str | None = None
  verbose: int = 2
  timing_repeats: int = 3
  trainer: str = "keras"
  tensorboard: bool = False

  def validate(self) -> None:
    """Raises :class:`ConfigError` naming the first bad value."""
    positive = {
      "seeds": self.seeds,
      "epochs": self.epochs,
      "batch_size": self.batch_size,
      "max_train_rows": self.max_train_rows,
      "max_test_rows": self.max_test_rows,
      "timing_repeats": self.timing_repeats,
    }
    for name, value in positive.items():
      if value is not None and int(value) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value}")
    if self.seed < 0:
      raise ConfigError(f"seed must be >= 0, got {self.seed}")
    if self.patience is not None and self.patience < 0:
      raise ConfigError(f"patience must be >= 0, got {self.patience}")
    if self.monitor is not None and self.monitor not in studies.MONITORS:
      raise ConfigError(
        f"monitor must be one of {', '.join(studies.MONITORS)}, got {self.monitor!r}"
      )
    if self.trainer not in TRAINERS:
      raise ConfigError(f"trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
    if self.lang not in data_lib.NUSAX_LANGUAGES:
      raise ConfigError(
        f"unknown NusaX language {self.lang!r}; valid: {', '.join(data_lib.NUSAX_LANGUAGES)}"
      )

  def recipe(self, family: studies.Family) -> studies.Recipe:
    """The family's recipe with this run's overrides applied."""
    base = family.recipe
    return dataclasses.replace(
      base,
      epochs=self.epochs or base.epochs,
      patience=base.patience if self.patience is None else self.patience,
      batch_size=self.batch_size or base.batch_size,
      monitor=self.monitor or base.monitor,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A family's data, split three ways. Text ``x_*`` are object arrays of str."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  identity: dict  # what selects these rows (goes into the run key)
  description: str  # for the reports
  class_names: tuple[str, ...] = ()  # by label index (confusion-matrix axes)


@dataclasses.dataclass(frozen=True)
class StudyOutput:
  """What one finished study wrote."""

  family: str
  study: str
  directory: pathlib.Path
  paths: dict
  rows: list


# ------------------------------------------------------------------------ data


_CLASS_NAMES = {
  "cifar10": data_lib.CIFAR10_CLASSES,
  "mnist": tuple(str(digit) for digit in range(10)),
  "nusax": data_lib.NUSAX_LABELS,
}


def load_dataset(family: studies.Family, settings: Settings) -> Dataset:
  """Loads the family's dataset: train / validation / test.

  - CIFAR-10: the seeded, stratified 40k/10k split of the official training set
    (``data.load_cifar10(seed=settings.seed)``), official test set.
  - MNIST: the last 20% of the official training set validates (what Keras's
    ``validation_split=0.2`` takes), official test set; rows flattened to 784.
  - NusaX-Senti: the official train / valid / test files of ``settings.lang``.

  ``max_train_rows`` / ``max_test_rows`` then keep a fixed random subset.
  """
  identity: dict[str, Any] = {"dataset": family.dataset}
  if family.dataset == "cifar10":
    d = data_lib.load_cifar10(settings.data_dir, seed=settings.seed)
    splits = (d.x_train, d.y_train, d.x_val, d.y_val, d.x_test, d.y_test)
    identity["split_seed"] = settings.seed
    source = (
      f"CIFAR-10 ({d.source.name}, a JPEG q75 re-encoding), stratified 4:1 "
      f"train/validation split seed {settings.seed}"
    )
  elif family.dataset == "mnist":
    d = data_lib.load_mnist(settings.data_dir, flatten=True)
    split_at = int(math.ceil(len(d.y_train) * (1.0 - MNIST_VALIDATION_SPLIT)))
    splits = (
      d.x_train[:split_at],
      d.y_train[:split_at],
      d.x_train[split_at:],
      d.y_train[split_at:],
      d.x_test,
      d.y_test,
    )
    source = f"MNIST ({d.source.name}), the last {MNIST_VALIDATION_SPLIT:.0%} of train validates"
  elif family.dataset == "nusax":
    d = data_lib.load_nusax(settings.lang, settings.data_dir)
    splits = (
      d.train_texts,
      d.train_labels,
      d.valid_texts,
      d.valid_labels,
      d.test_texts,
      d.test_labels,
    )
    identity["lang"] = settings.lang
    source = f"NusaX-Senti {settings.lang} (official train/valid/test files)"
  else:
    raise ValueError(f"unknown dataset {family.dataset!r}")
  x_train, y_train = fitting.subsample(splits[0], splits[1], settings.max_train_rows)
  x_val, y_val = fitting.subsample(splits[2], splits[3], settings.max_train_rows)
  x_test, y_test = fitting.subsample(splits[4], splits[5], settings.max_test_rows)
  identity.update(max_train_rows=settings.max_train_rows, max_test_rows=settings.max_test_rows)
  description = (
    f"{source}: {len(y_train)} train / {len(y_val)} validation / {len(y_test)} test rows"
  )
  return Dataset(
    family.dataset,
    x_train,
    y_train,
    x_val,
    y_val,
    x_test,
    y_test,
    d.num_classes,
    identity,
    description,
    _CLASS_NAMES[family.dataset],
  )


# -------------------------------------------------------------- one run (seed)


@dataclasses.dataclass(frozen=True)
class Job:
  """One (study, variant, seed) to produce."""

  family: studies.Family
  study: studies.Study
  variant: studies.Variant
  variant_index: int
  seed_index: int
  seed: int
  config: dict
  recipe: studies.Recipe
  run_key: str
  run_dir: pathlib.Path


def run_key(
  family: studies.Family,
  config: dict,
  recipe: studies.Recipe,
  dataset: Dataset,
  seed: int,
  trainer: str = "keras",
) -> str:
  """Hash of everything that determines a run's numbers."""
  identity = {
    "family": family.name,
    "builder": family.builder,
    "config": config,
    "recipe": dataclasses.asdict(recipe),
    "data": dataset.identity,
    "seed": seed,
    "backend": keras.backend.backend(),
  }
  if trainer != "keras":  # (keras runs keep the keys they had before trainers existed)
    identity["trainer"] = trainer
  return studies.config_hash(identity)


def versions() -> dict[str, str]:
  """Library versions recorded with every run."""
  import jax  # pylint: disable=import-outside-toplevel
  import sklearn  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  return {
    "python": platform.python_version(),
    "tensorflow": tf.__version__,
    "keras": keras.__version__,
    "keras_backend": keras.backend.backend(),
    "jax": jax.__version__,
    "numpy": np.__version__,
    "sklearn": sklearn.__version__,
    "cpu_count": str(os.cpu_count()),
    "machine": platform.machine(),
  }


def _write_json(path: pathlib.Path, payload: Any) -> None:
  report.atomic_write(path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())


def read_result(run_dir: pathlib.Path) -> dict | None:
  """The run's finished record, or None if it has none; one that does not validate
  is moved aside, so the run is redone (``train.workdir.read_record``)."""
  return workdir_lib.read_record(run_dir, RESULT_FILE, HISTORY_FILE)


def _build_model(family: studies.Family, config: dict, dataset: Dataset):
  if family.builder == "build_text":
    vectorizer = models.make_vectorizer(
      dataset.x_train, max_tokens=config["max_tokens"], sequence_length=config["sequence_length"]
    )
    return models.build_text(vectorizer, num_classes=dataset.num_classes, **config)
  builder = getattr(models, family.builder)
  return builder(num_classes=dataset.num_classes, **config)


def train_and_check(job: Job, dataset: Dataset, settings: Settings) -> dict:
  """Trains one run in ``job.run_dir`` and checks it against its port.

  Writes ``model.keras`` and ``history.json``, then ``result.json`` last (the
  record it returns). Raises :class:`PortMismatchError` (after writing
  ``port_check_failed.json``) when the port disagrees with Keras.
  """
  run_dir = job.run_dir
  if run_dir.exists():
    # A killed run's leftovers: start clean. A finished run is never removed
    # (the caller skips it; this guards against any path that would not).
    if (run_dir / RESULT_FILE).exists():
      raise RuntimeError(f"{run_dir} holds a finished run; it is never retrained in place")
    shutil.rmtree(run_dir)
  run_dir.mkdir(parents=True)
  started = time.perf_counter()

  keras.backend.clear_session()
  keras.utils.set_random_seed(job.seed)
  if settings.trainer == "jax":
    model, curves, train_time, epoch_times, best_epoch = _fit_jax(job, dataset, settings)
  else:
    model, curves, train_time, epoch_times, best_epoch = _fit_keras(job, dataset, settings)
  val_loss = curves["val_loss"]

  tmp_model = run_dir / ".tmp-model.keras"  # Keras insists on the .keras suffix
  model.save(tmp_model)
  os.replace(tmp_model, run_dir / MODEL_FILE)
  _write_json(run_dir / HISTORY_FILE, curves)

  test = port_check(model, run_dir / MODEL_FILE, dataset, settings.timing_repeats)
  test_failed = test.pop("failure", None)
  record = {
    "family": job.family.name,
    "study": job.study.name,
    "variant": job.variant.name,
    "seed": job.seed,
    "run_key": job.run_key,
    "config": job.config,
    "recipe": dataclasses.asdict(job.recipe),
    "data": dataset.description,
    "train": {
      "epochs_run": len(val_loss),
      "best_epoch": best_epoch,
      "best_val_loss": float(val_loss[best_epoch - 1]),
      "stopped_early": len(val_loss) < job.recipe.epochs,
      "train_time_s": train_time,
      "mean_epoch_s": float(np.mean(epoch_times)) if epoch_times else math.nan,
      "trainer": settings.trainer,
    },
    "test": test,
    "versions": versions(),
    "wall_time_s": time.perf_counter() - started,
    "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "reused_from": None,
  }
  if test_failed:
    _write_json(run_dir / PORT_FAILURE_FILE, record)
    raise PortMismatchError(
      f"{job.family.name}/{job.study.name}/{job.variant.name} seed "
      f"{job.seed}: {test_failed} (details in {run_dir / PORT_FAILURE_FILE})"
    )
  _write_json(run_dir / RESULT_FILE, record)
  if settings.trainer == "jax":
    shutil.rmtree(_checkpoint_dir(job), ignore_errors=True)
  return record


def _fit_keras(job: Job, dataset: Dataset, settings: Settings):
  """Keras ``fit`` with EarlyStopping (restore best); returns the trained model."""
  if job.study.name == studies.BEST:  # optimiser, schedule, extra data: train/recipes.py
    extra = [tensorboard_logs.keras_callback(job.run_dir)] if settings.tensorboard else []
    return recipes.fit_keras(job, dataset, settings, extra)
  model = models.compile_model(
    _build_model(job.family, job.config, dataset), job.recipe.learning_rate
  )
  stopper = keras.callbacks.EarlyStopping(
    monitor=job.recipe.monitor, patience=job.recipe.patience, restore_best_weights=True
  )
  timer = fitting.EpochTimer()
  callbacks = [stopper, timer]
  if settings.tensorboard:
    callbacks.append(tensorboard_logs.keras_callback(job.run_dir))
  fit_start = time.perf_counter()
  history = model.fit(
    **keras_inputs.fit_arguments(
      dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val, job.recipe.batch_size
    ),
    epochs=job.recipe.epochs,
    verbose=settings.verbose,
    callbacks=callbacks,
  )
  train_time = time.perf_counter() - fit_start
  curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
  curves["epoch_time_s"] = timer.times
  # The epoch restore_best_weights restored: the first best value of the monitor.
  watched = np.asarray(curves[job.recipe.monitor])
  best_epoch = 1 + int(
    np.argmin(watched) if job.recipe.monitor.endswith("loss") else np.argmax(watched)
  )
  return model, curves, train_time, timer.times, best_epoch


def _checkpoint_dir(job: Job) -> pathlib.Path:
  # Beside the run directory, which a restarted run wipes: the checkpoint is
  # what lets a killed JAX run resume mid-training.
  return job.run_dir.parent / f".checkpoints-{job.run_dir.name}"


def _fit_jax(job: Job, dataset: Dataset, settings: Settings):
  """The same architecture trained by the JAX trainer, returned as a Keras model.

  The Keras builder gives the architecture (and the adapted TextVectorization);
  ``port.load`` turns it into jaxnets layers, which are re-initialised with
  Keras's default initialisers and trained with optax Adam. ``port.to_keras``
  writes the result back into a Keras model, which is then saved and checked
  exactly like a Keras-trained one.
  """
  from train import jax_trainer  # pylint: disable=import-outside-toplevel

  architecture = port.load(_build_model(job.family, job.config, dataset))
  config = jax_trainer.TrainConfig(
    optimizer="adam",
    learning_rate=job.recipe.learning_rate,
    batch_size=job.recipe.batch_size,
    epochs=job.recipe.epochs,
    patience=job.recipe.patience,
    monitor=job.recipe.monitor,
    seed=job.seed,
  )
  log = (lambda line: print(line, flush=True)) if settings.verbose else (lambda line: None)
  with contextlib.ExitStack() as stack:
    writer = None
    if settings.tensorboard:
      writer = stack.enter_context(tensorboard_logs.EpochWriter(job.run_dir))
    fit_start = time.perf_counter()
    result = jax_trainer.fit(
      architecture,
      dataset.x_train,
      dataset.y_train,
      dataset.x_val,
      dataset.y_val,
      config,
      checkpoint_dir=str(_checkpoint_dir(job)),
      log=log,
      on_epoch_end=writer,
    )
    train_time = time.perf_counter() - fit_start
  trained = architecture.replace(params=result.params)
  curves = {k: [float(v) for v in vals] for k, vals in result.history.items()}
  curves["epoch_time_s"] = list(result.epoch_times)
  return port.to_keras(trained), curves, train_time, result.epoch_times, result.best_epoch


def _interleaved_medians(
  systems: dict[str, Callable[[], object]], repeats: int
) -> dict[str, float]:
  """Median seconds of each function over ``repeats`` rounds run in turn (A B A
  B ...) after one warm-up round, so that drifts in machine load hit all alike.
  (``bench/timing.py`` is the benchmark's fuller version, with per-round ratios.)"""
  for fn in systems.values():
    fn()
  times = {name: [] for name in systems}
  for _ in range(repeats):
    for name, fn in systems.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: float(statistics.median(t)) for name, t in times.items()}


def port_check(keras_model, model_path: pathlib.Path, dataset: Dataset, repeats: int = 3) -> dict:
  """Ports the saved model and compares it with Keras on the whole test set.

  Both predict ``dataset.x_test`` (raw strings for text models) in batches of
  256; the first (warm-up) pass gives the predictions, then ``repeats``
  interleaved timed passes give each system's median inference time.
  Returns the metrics; ``"failure"`` holds ``port.compare``'s problems when the
  port is further from Keras's float64 evaluation than the parity rule allows
  (or a decided row's class differs).
  """
  ported = port.load(os.fspath(model_path))
  outputs = {}

  def keras_predict():
    outputs.setdefault(
      "keras",
      keras_model.predict(
        **keras_inputs.predict_arguments(dataset.x_test, PREDICT_BATCH), verbose=0
      ),
    )

  def port_predict():
    outputs.setdefault("port", np.asarray(ported.predict(dataset.x_test, batch_size=PREDICT_BATCH)))

  seconds = _interleaved_medians({"keras": keras_predict, "port": port_predict}, repeats)
  keras_probs, port_probs = np.asarray(outputs["keras"]), outputs["port"]
  labels = np.arange(dataset.num_classes)
  y = dataset.y_test
  keras_pred, port_pred = keras_probs.argmax(-1), port_probs.argmax(-1)
  comparison = port.compare(
    keras_model, ported, dataset.x_test, keras_outputs=keras_probs, port_outputs=port_probs
  )

  def f1(pred):
    return float(f1_score(y, pred, average="macro", labels=labels, zero_division=0))

  result = {
    "rows": int(len(y)),
    "keras_macro_f1": f1(keras_pred),
    "keras_accuracy": float(np.mean(keras_pred == y)),
    "port_macro_f1": f1(port_pred),
    "port_accuracy": float(np.mean(port_pred == y)),
    "agreement_pct": float(100.0 * np.mean(keras_pred == port_pred)),
    "max_abs_diff": comparison.max_abs_diff,
    # The parity rule's figures (port.compare): both float32 outputs' distance
    # from Keras's float64 evaluation, and the bound the port's must meet.
    "port_f64_error": comparison.port_error,
    "keras_f64_error": comparison.keras_error,
    "parity_bound": comparison.bound,
    "parity_reference": comparison.reference,
    "keras_infer_s": seconds["keras"],
    "port_infer_s": seconds["port"],
    # Counts, not a figure: the study report rebuilds its figure from
    # result.json alone. Rows true class, columns predicted (Keras's predictions).
    "confusion_matrix": confusion_matrix(y, keras_pred, labels=labels).tolist(),
  }
  problems = list(comparison.problems)
  if problems:
    result["failure"] = "; ".join(problems)
  return result


def _reuse(job: Job, source_dir: pathlib.Path, workdir: pathlib.Path) -> dict:
  """Copies a finished run with the same key into ``job.run_dir`` (atomically)."""
  tmp = job.run_dir.parent / f".tmp-{job.run_dir.name}"
  if tmp.exists():
    shutil.rmtree(tmp)
  shutil.copytree(source_dir, tmp, ignore=shutil.ignore_patterns(".tmp*"))
  record = read_result(tmp)
  record.update(
    study=job.study.name,
    variant=job.variant.name,
    reused_from=os.fspath(source_dir.relative_to(workdir)),
  )
  _write_json(tmp / RESULT_FILE, record)
  if job.run_dir.exists():
    shutil.rmtree(job.run_dir)
  os.replace(tmp, job.run_dir)
  return record


# ----------------------------------------------------------------- the studies


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _Progress:
  """Prints "[variant i/n 'name', seed j/m] ... ETA mm:ss" lines."""

  def __init__(self, to_train: int, seeds: int, log: Callable[[str], None]):
    self.to_train, self.seeds, self.trained, self.durations = to_train, seeds, 0, []
    self.start, self.log = time.perf_counter(), log
    self.slots = 1  # runs trained at once (an executor's workers)

  def eta(self) -> str:
    if not self.durations:
      return "ETA --:-- (after the first run)"
    remaining = max(self.to_train - self.trained, 0)
    if self.slots > 1:
      # Runs overlap: the wall time per finished run so far, workers' start-up included.
      per_run = (time.perf_counter() - self.start) / self.trained
    else:
      per_run = sum(self.durations) / len(self.durations)
    return f"ETA {_clock(remaining * per_run)}"

  def prefix(self, job: Job) -> str:
    return (
      f"[{job.family.name}/{job.study.name}] [variant {job.variant_index + 1}/"
      f"{len(job.study.variants)} {job.variant.name!r}, seed {job.seed_index + 1}/"
      f"{self.seeds} (seed={job.seed})]"
    )

  def training(self, job: Job) -> None:
    self.log(
      f"{self.prefix(job)} training: run {self.trained + 1} of {self.to_train} to "
      f"train, elapsed {_clock(time.perf_counter() - self.start)}, {self.eta()}"
    )

  def finished(self, job: Job, record: dict, seconds: float) -> None:
    self.trained += 1
    self.durations.append(seconds)
    t = record["test"]
    self.log(
      f"{self.prefix(job)} done in {_clock(seconds)}: macro F1 "
      f"{t['keras_macro_f1']:.4f} (port {t['port_macro_f1']:.4f}, agreement "
      f"{t['agreement_pct']:.2f}%, max diff {t['max_abs_diff']:.1e}), "
      f"{record['train']['epochs_run']} epochs; {self.eta()}"
    )


class _Runs:
  """Hands out each run's record: trained here, or received from an executor.

  Without an executor a run trains in this process when the study loop reaches
  it (the embedded path). With one, every run to train is submitted up front
  and each is written to the work directory (:func:`executors_base.write_run`)
  as soon as it comes back, whatever the order; the study loop then picks the
  records up in its own order, so reports are written exactly as before.
  """

  def __init__(self, executor, settings: Settings, progress: _Progress, log):
    self.executor, self.settings, self.progress, self.log = executor, settings, progress, log
    self.submitted: dict[str, Job] = {}
    self.records: dict[str, dict] = {}

  def submit(self, jobs: list[Job]) -> None:
    if self.executor is None or not jobs:
      return
    self.executor.start(self.log)
    self.progress.slots = max(1, min(self.executor.slots, len(jobs)))
    # verbose=0: per-epoch lines of several workers would interleave. A relative
    # --data_dir means the driver's folder; a worker may run in another directory.
    data_dir = self.settings.data_dir
    data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else None
    remote = dataclasses.replace(self.settings, verbose=0, data_dir=data_dir)
    backend = keras.backend.backend()
    for job in jobs:
      self.submitted[job.run_key] = job
      label = f"{job.family.name}/{job.study.name}/{job.variant.name} seed {job.seed}"
      spec = executors_base.RunSpec(
        job.family.name,
        job.study.name,
        job.variant.name,
        job.seed,
        job.run_key,
        remote,
        backend,
        label,
      )
      self.executor.submit(spec)
    self.log(f"{len(jobs)} runs submitted; one line per finished run")

  def is_submitted(self, job: Job) -> bool:
    return self.submitted.get(job.run_key) is job

  def record(self, job: Job, dataset: Dataset) -> dict:
    if self.executor is None:
      self.progress.training(job)
      start = time.perf_counter()
      record = train_and_check(job, dataset, self.settings)
      self.progress.finished(job, record, time.perf_counter() - start)
      return record
    while job.run_key not in self.records:
      for output in self.executor.wait():
        done = self.submitted[output.run_key]
        executors_base.write_run(done.run_dir, output, RESULT_FILE)
        if output.failure:
          raise PortMismatchError(output.failure.replace("{run_dir}", os.fspath(done.run_dir)))
        record = read_result(done.run_dir)
        self.records[output.run_key] = record
        self.progress.finished(done, record, record["wall_time_s"])
    return self.records[job.run_key]


def plan_jobs(family, study, settings, dataset, workdir) -> list[Job]:
  """The study's runs, variant by variant, seed by seed, with their keys and directories."""
  recipe = settings.recipe(family)
  jobs = []
  for vi, variant in enumerate(study.variants):
    config = family.config(variant)
    for si in range(settings.seeds):
      seed = settings.seed + si
      jobs.append(
        Job(
          family,
          study,
          variant,
          vi,
          si,
          seed,
          config,
          recipe,
          run_key(family, config, recipe, dataset, seed, settings.trainer),
          workdir / family.name / study.name / variant.name / f"seed{seed}",
        )
      )
  return jobs


def _finished_runs(workdir: pathlib.Path, family: studies.Family) -> dict[str, pathlib.Path]:
  """run_key -> directory of every finished run of ``family`` in ``workdir``."""
  index = {}
  for path in sorted((workdir / family.name).glob(f"*/*/seed*/{RESULT_FILE}")):
    record = read_result(path.parent)
    if record and record.get("run_key") and record.get("reused_from") is None:
      index.setdefault(record["run_key"], path.parent)
  return index


def _study_settings(family, study, settings, dataset, recipe, records) -> dict[str, str]:
  seeds = [settings.seed + i for i in range(settings.seeds)]
  base = ", ".join(f"{k}={v}" for k, v in family.base.items())
  compute = sum(r.get("wall_time_s", 0.0) for r in records if r.get("reused_from") is None)
  reused = sum(1 for r in records if r.get("reused_from"))
  vers = records[0]["versions"] if records else versions()
  return {
    "family": f"{family.title}, builder `train.models.{family.builder}`",
    "base config": f"`{base}`",
    "recipe": recipes.describe(family.base, recipe)
    if study.name == studies.BEST
    else (
      f"Adam (lr {recipe.learning_rate:g}), sparse categorical cross-entropy, "
      f"batch {recipe.batch_size}, at most {recipe.epochs} epochs, "
      f"EarlyStopping({recipe.monitor}, patience {recipe.patience}, restore best "
      "weights)"
    ),
    "data": dataset.description,
    "seeds": f"{len(seeds)} ({', '.join(map(str, seeds))})",
    "compute time": (
      f"{_clock(compute)} (sum of the runs trained for this study, training "
      f"+ port check; {reused} run(s) reused from another study of the family)"
    ),
    "versions": ", ".join(f"{k} {v}" for k, v in vers.items()),
    "command": (
      f"`python -m train --family={family.name} --study={study.name} "
      f"--seeds={settings.seeds}{_extra_flags(family, settings)}`"
    ),
  }


def _extra_flags(family, settings) -> str:
  flags = []
  if settings.seed:
    flags.append(f"--seed={settings.seed}")
  for name in ("epochs", "patience", "batch_size", "monitor", "max_train_rows", "max_test_rows"):
    value = getattr(settings, name)
    if value is not None:
      flags.append(f"--{name}={value}")
  if family.dataset == "nusax" and settings.lang != "indonesian":
    flags.append(f"--lang={settings.lang}")
  if settings.trainer != "keras":
    flags.append(f"--trainer={settings.trainer}")
  return "".join(" " + f for f in flags)


def _write_report(family, study, settings, dataset, jobs, records) -> dict:
  """The study's report from ``records``; partial while some of ``jobs`` have none."""
  histories = {}
  for job in jobs:
    path = job.run_dir / HISTORY_FILE
    if any(r["variant"] == job.variant.name and r["seed"] == job.seed for r in records):
      with open(path, encoding="utf-8") as f:
        histories[(job.variant.name, job.seed)] = json.load(f)
  variants = []
  for variant in study.variants:
    setting = ", ".join(f"{k}={v}" for k, v in variant.overrides.items()) or "base config"
    variants.append((variant.name, setting))
  return report.write_study(
    jobs[0].run_dir.parent.parent,
    title=f"{family.title}: {study.name} study",
    varies=study.varies,
    variants=variants,
    records=records,
    histories=histories,
    settings=_study_settings(family, study, settings, dataset, jobs[0].recipe, records),
    class_names=dataset.class_names,
    loss_label=_loss_label(jobs),
    runs_total=len(jobs),
  )


def _loss_label(jobs) -> str:
  """The loss curves' y-axis: what the runs minimised (``best`` recipes may
  smooth the labels, which keeps the loss well above 0)."""
  smoothing = sorted({float(job.config.get("label_smoothing", 0.0)) for job in jobs} - {0.0})
  if not smoothing:
    return "sparse categorical cross-entropy"
  values = " / ".join(f"{s:g}" for s in smoothing)
  return f"cross-entropy (label smoothing {values} where set)"


def run(
  family_name: str,
  study_name: str,
  workdir: os.PathLike,
  settings: Settings = Settings(),
  *,
  export_dir: os.PathLike | None = None,
  log: Callable[[str], None] = lambda s: print(s, flush=True),
  executor: executors_base.Executor | None = None,
  report_only: bool = False,
) -> list[StudyOutput]:
  """Runs a study (or ``"all"`` studies of a family, or of every family).

  Args:
    family_name: ``cnn``, ``rnn``, ``lstm``, ``mlp`` or ``all``.
    study_name: a study of the family (see :mod:`train.studies`) or ``all``.
    workdir: where runs and reports go (resumable; see the module docstring).
    settings: seeds, recipe overrides, data selection.
    export_dir: also copy each study's tables and figure to
      ``<export_dir>/<family>/<study>/`` (e.g. the repository's ``results/``).
    log: progress sink (one line per call).
    executor: where the runs train (:mod:`train.executors`): None trains them
      here, one after another; an executor gets every missing run at once and
      returns each run's files, which this process writes. It is started only
      when something is left to train, and closed (or, on an error or Ctrl-C,
      cancelled with every finished run kept) before this returns.
    report_only: train nothing; write each study's report (and export) from
      the runs already finished in ``workdir``, marked partial when some are
      missing. A study without any finished run is skipped (logged).
  Returns:
    One :class:`StudyOutput` per study, in the order they ran.
  Raises:
    ConfigError: unknown family/study, bad settings, or a text family on a
      non-TensorFlow Keras backend (all before any work).
    SettingsMismatchError: ``workdir`` has finished runs of the same
      family/study/variant/seed made with other settings.
    PortMismatchError: a trained model's port disagreed with Keras.
  """
  try:
    pairs = studies.resolve(family_name, study_name)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  settings.validate()
  try:
    workdir = workdir_lib.resolve(workdir)
  except workdir_lib.WorkdirError as e:
    raise ConfigError(str(e)) from None
  if settings.trainer != "keras":
    # Each trainer has its own tree, so Keras and JAX studies sit side by side.
    workdir = workdir / settings.trainer
    if export_dir is not None:
      export_dir = pathlib.Path(export_dir) / settings.trainer

  if settings.trainer != "keras" and any(s.name == studies.BEST for _, s in pairs):
    raise ConfigError(
      f"the {studies.BEST} studies train with Keras only (their optimisers, schedules and "
      f"augmentation are Keras's); got --trainer={settings.trainer}"
    )
  backend = keras.backend.backend()
  if backend != "tensorflow" and any(f.dataset == "nusax" for f, _ in pairs):
    raise ConfigError(
      f"the text families need KERAS_BACKEND=tensorflow (TextVectorization "
      f"on string tensors); the backend is {backend!r}"
    )
  if backend == "tensorflow":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.config.experimental.enable_op_determinism()

  try:
    with workdir_lib.WorkdirLock(workdir):
      return _run_locked(pairs, workdir, settings, export_dir, log, executor, report_only)
  except workdir_lib.WorkdirError as e:
    raise ConfigError(str(e)) from None


def _run_locked(
  pairs, workdir, settings, export_dir, log, executor, report_only=False
) -> list[StudyOutput]:
  """``run``'s work, while this process holds ``workdir``."""
  datasets: dict[str, Dataset] = {}
  plan = []  # (family, study, jobs)
  for family, study in pairs:
    if family.name not in datasets:
      log(f"loading data for {family.name} ...")
      datasets[family.name] = load_dataset(family, settings)
      log(f"  {datasets[family.name].description}")
    plan.append((family, study, plan_jobs(family, study, settings, datasets[family.name], workdir)))

  # Check every existing result before training anything; count what is left.
  indexes = {f.name: _finished_runs(workdir, f) for f, _, _ in plan}
  planned_keys, to_train, train_jobs = set(), 0, []
  for family, _, jobs in plan:
    for job in jobs:
      record = read_result(job.run_dir)
      if record is not None and record.get("run_key") != job.run_key:
        raise SettingsMismatchError(
          f"{job.run_dir} holds a finished run made with other settings (run key "
          f"{record.get('run_key')} != {job.run_key}; e.g. a different --epochs, "
          f"--batch_size, --max_train_rows or --lang). Use another --workdir, or delete "
          "that directory to retrain it."
        )
      if (
        record is None
        and job.run_key not in indexes[family.name]
        and job.run_key not in planned_keys
      ):
        to_train += 1
        planned_keys.add(job.run_key)
        train_jobs.append(job)
  if report_only:
    log(f"--report_only: {to_train} unfinished run(s) left out, nothing trained")
    to_train, train_jobs = 0, []
  progress = _Progress(to_train, settings.seeds, log)
  log(
    f"{sum(len(j) for _, _, j in plan)} runs in {len(plan)} stud"
    f"{'y' if len(plan) == 1 else 'ies'}; {to_train} to train, the rest done already or "
    f"shared between studies. Work directory: {workdir}"
  )

  runs = _Runs(executor, settings, progress, log)
  try:
    runs.submit(train_jobs)
    return _run_studies(
      plan, datasets, indexes, runs, workdir, settings, export_dir, log, report_only
    )
  except BaseException:
    if executor is not None and executor.pending:
      log(
        f"stopping {executor.pending} unfinished run(s); every finished run is kept, "
        "re-run the command to resume"
      )
      executor.cancel()
    raise
  finally:
    if executor is not None:
      executor.close()


def _run_studies(  # pylint: disable=too-many-locals
  plan, datasets, indexes, runs, workdir, settings, export_dir, log, report_only=False
):
  """Collects every study's records in order (training or waiting for them), writes
  reports; with ``report_only`` the unfinished runs are left out instead."""
  progress = runs.progress
  outputs = []
  for family, study, jobs in plan:
    dataset, index = datasets[family.name], indexes[family.name]
    records, missing = [], 0
    for vi in range(len(study.variants)):
      for job in (j for j in jobs if j.variant_index == vi):
        record = None if runs.is_submitted(job) else read_result(job.run_dir)
        if record is not None:
          log(f"{progress.prefix(job)} finished already, skipped")
        elif job.run_key in index:
          record = _reuse(job, index[job.run_key], workdir)
          log(f"{progress.prefix(job)} same config and seed as {record['reused_from']}: reused")
        elif report_only:
          missing += 1
          continue
        else:
          record = runs.record(job, dataset)
          index[job.run_key] = job.run_dir
        records.append(record)
      if not report_only:
        paths = _write_report(family, study, settings, dataset, jobs, records)
    if report_only:
      if not records:
        log(f"[{family.name}/{study.name}] no finished run in {workdir}: no report written")
        continue
      if missing:
        log(f"[{family.name}/{study.name}] {missing} unfinished run(s) left out (partial report)")
      paths = _write_report(family, study, settings, dataset, jobs, records)
    rows = report.summarize([(v.name, "") for v in study.variants], records)
    if export_dir is not None:
      target = pathlib.Path(export_dir) / family.name / study.name
      for path in paths.values():
        report.atomic_write(target / path.name, path.read_bytes())
    log(f"[{family.name}/{study.name}] {report.verdict(rows)}")
    log(
      f"[{family.name}/{study.name}] results: {paths['md']} (table), {paths['csv']}, "
      f"{paths['png']} (loss curves)"
      + (f", {paths['confusion']} (confusion matrix)" if "confusion" in paths else "")
    )
    outputs.append(StudyOutput(family.name, study.name, paths["md"].parent, paths, rows))
  return outputs
