"""JAX-native training of jaxnets models with optax and a flax ``TrainState``.

The layers stay jaxnets' pure functions: ``jax.value_and_grad`` runs straight
through ``Model.apply(params, x, training=True, rng=...)``. What this module
adds is the loop a Keras user expects from ``fit``:

- one jitted train step (optax Adam with Keras's ``epsilon=1e-7``, or SGD);
- dropout with explicit PRNG keys, derived from ``(seed, epoch, step)`` so a
  resumed run draws exactly the keys an uninterrupted one would;
- per-epoch shuffling from ``(seed, epoch)``, likewise resumable;
- early stopping on validation loss with restore-best (Keras's callback);
- on a device: the training and validation data are put on it once, each step
  gathers its batch there (rows planned on the host per epoch, a partial batch
  padded with zero-weight rows), the train state is donated to the step (its
  buffers are reused in place; the best parameters are copied first), and the
  loss sums stay on the device until the epoch ends: one read-back per epoch;
- an orbax checkpoint after every epoch; a killed run resumes from the last;
- per-epoch progress lines like Keras's ``verbose=2``;
- data parallelism: with several devices the batch is sharded across them
  (``jax.sharding``), the parameters replicated; XLA inserts the all-reduce.

The classifier's final softmax is folded into the loss (softmax cross-entropy
on logits), which is the same function with better numerics.

Text models (``Model.trims_padding``) train on batches cut to their longest
real sequence: masked steps carry the state unchanged, so the loss and
gradients are the same as on the full padded length, at a fraction of the work.
The cut is ``jaxnets.batching``'s (``bucketed_length``), as ``Model.predict``'s.
"""

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state

import jaxnets
from jaxnets import batching


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyper-parameters of one training run.

  Attributes:
    optimizer: ``"adam"`` (Keras defaults: lr 1e-3, betas 0.9/0.999, eps 1e-7)
      or ``"sgd"`` (plain SGD, as the PyTorch recipe).
    learning_rate: step size.
    batch_size: rows per step; the last partial batch is padded with
      zero-weight rows so every step has one compiled shape.
    epochs: maximum number of epochs.
    patience: early stopping after this many epochs without improvement of
      ``monitor`` (``None``: train all epochs).
    restore_best: with early stopping, return the best epoch's parameters.
    monitor: ``"val_loss"`` (lower is better) or ``"val_accuracy"`` (higher),
      as Keras's ``EarlyStopping(monitor=...)``.
    seed: initialisation, shuffling and dropout.
  """

  optimizer: str = "adam"
  learning_rate: float = 1e-3
  batch_size: int = 128
  epochs: int = 10
  patience: int | None = None
  restore_best: bool = True
  seed: int = 0
  monitor: str = "val_loss"

  def __post_init__(self):
    if self.monitor not in ("val_loss", "val_accuracy"):
      raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {self.monitor!r}")
    if self.optimizer not in ("adam", "sgd"):
      raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
    if self.batch_size < 1 or self.epochs < 1:
      raise ValueError(
        f"batch_size and epochs must be positive, got {self.batch_size}, {self.epochs}"
      )
    if self.patience is not None and self.patience < 0:
      raise ValueError(f"patience must be >= 0, got {self.patience}")


@dataclasses.dataclass
class FitResult:
  """What ``fit`` returns: the chosen params and Keras-style history."""

  params: dict[str, Any]
  history: dict[str, list[float]]
  epochs_run: int
  best_epoch: int
  train_time: float
  samples_per_second: float
  epoch_times: list[float] = dataclasses.field(default_factory=list)


class TrainState(train_state.TrainState):
  """flax TrainState plus the early-stopping bookkeeping, checkpointed together."""

  best_params: Any = None


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  if config.optimizer == "adam":
    return optax.adam(config.learning_rate, b1=0.9, b2=0.999, eps=1e-7)
  return optax.sgd(config.learning_rate)


def logits_model(model: jaxnets.Model) -> jaxnets.Model:
  """The same model with its final softmax removed (it moves into the loss).

  Only chains (the studies' models): the layers are rebuilt in order, so a
  graph with branches, merges or several inputs/outputs is refused by name
  rather than trained as the wrong chain.
  """
  if not model.graph.is_chain:
    raise ValueError(
      f"model {model.name!r}: the JAX trainer trains chains of layers (Sequential-like "
      "models); this one is a graph with branches, merges or several inputs/outputs"
    )
  layers = list(model.layers)
  last = layers[-1]
  if getattr(last, "activation", None) == "softmax" and hasattr(last, "units"):
    layers[-1] = dataclasses.replace(last, activation="linear")
  elif type(last).__name__ == "Softmax" or getattr(last, "activation", None) == "softmax":
    layers = layers[:-1]
  else:
    raise ValueError(
      f"model {model.name!r}: the JAX trainer needs a classifier whose last "
      f"layer applies softmax; the last layer is {last.name!r} "
      f"({type(last).__name__})"
    )
  return jaxnets.Model(
    layers,
    model.params,
    input_shape=model.input_shape,
    input_dtype=model.input_dtype,
    preprocessor=model.preprocessor,
    name=model.name,
  )


def _weighted_loss_and_correct(apply_fn, params, x, y, w, training, rng):
  logits = apply_fn(params, x, training=training, rng=rng)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
  return jnp.sum(losses * w), jnp.sum(correct * w)


@dataclasses.dataclass(frozen=True)
class DeviceData:
  """One split put on the device(s) once; steps gather their batches from it.

  Attributes:
    x: inputs (token ids or floats), ``(rows, ...)``, replicated over the local devices.
    y: integer labels, ``(rows,)``.
    rows: number of rows; a batch index equal to it is padding (a zero row of weight 0).
    lengths: each token row's real length, on the host (``trim``), else ``None``.
  """

  x: jax.Array
  y: jax.Array
  rows: int
  lengths: np.ndarray | None


def _to_device(x: np.ndarray, y: np.ndarray, trim: bool) -> DeviceData:
  sharding = batching.replicated_sharding() if jax.local_device_count() > 1 else None
  return DeviceData(
    x=jax.device_put(x, sharding),
    y=jax.device_put(y, sharding),
    rows=len(x),
    lengths=batching.real_lengths(x) if trim else None,
  )


def _plan(data: DeviceData, order: np.ndarray, batch_size: int) -> tuple[jax.Array, list]:
  """The batches of the rows in ``order``: their row indices, ``(batches, batch_size)`` on the
  device (a partial last batch padded with ``data.rows``), and each batch's length cut (the
  longest real sequence, bucketed as ``jaxnets.batching`` does) or ``None`` without trimming."""
  batches = -(-len(order) // batch_size)
  index = np.full(batches * batch_size, data.rows, np.int32)
  index[: len(order)] = order
  cuts = [None] * batches
  if data.lengths is not None:
    max_length = data.x.shape[1]
    cuts = [
      batching.bucketed_length(int(data.lengths[order[i : i + batch_size]].max()), max_length)
      for i in range(0, len(order), batch_size)
    ]
  sharding = batching.replicated_sharding() if jax.local_device_count() > 1 else None
  return jax.device_put(index.reshape(batches, batch_size), sharding), cuts


def _gather(data_x, data_y, index, cut):
  """``(x, y, w)`` of one batch, inside a jitted step: rows ``index`` (``rows`` itself gives a
  zero row of weight 0), token ids cut to ``cut`` steps; split over the devices by rows."""
  rows = data_x.shape[0]
  if cut is not None:
    data_x = data_x[:, :cut]
  x = jnp.take(data_x, index, axis=0, mode="fill", fill_value=0)
  y = jnp.take(data_y, index, axis=0, mode="fill", fill_value=0)
  w = (index < rows).astype(jnp.float32)
  if jax.local_device_count() > 1:
    sharding = batching.batch_sharding()
    x, y, w = (jax.lax.with_sharding_constraint(a, sharding) for a in (x, y, w))
  return x, y, w


def _make_steps(apply_fn):
  """Jitted train and eval steps over batches gathered on the device.

  Both add the batch's weighted ``[loss sum, correct count]`` to ``sums`` (float32, on the
  device). The train step donates ``state``: its buffers become the new state's, so the
  caller must not keep the old one (``fit`` copies the best parameters before a step).
  """

  @functools.partial(jax.jit, static_argnames="cut", donate_argnames="state")
  def train_step(state: TrainState, sums, data_x, data_y, plan, step, epoch_key, cut=None):
    x, y, w = _gather(data_x, data_y, plan[step], cut)
    rng = jax.random.fold_in(epoch_key, step + 1)

    def loss_fn(params):
      total, correct = _weighted_loss_and_correct(apply_fn, params, x, y, w, True, rng)
      return total / jnp.maximum(jnp.sum(w), 1.0), (total, correct)

    grads, (total, correct) = jax.grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads), sums + jnp.stack([total, correct])

  @functools.partial(jax.jit, static_argnames="cut")
  def eval_step(params, sums, data_x, data_y, plan, step, cut=None):
    x, y, w = _gather(data_x, data_y, plan[step], cut)
    total, correct = _weighted_loss_and_correct(apply_fn, params, x, y, w, False, None)
    return sums + jnp.stack([total, correct])

  return train_step, eval_step


def _check_batch_size(batch_size: int) -> None:
  devices = jax.local_device_count()
  if devices > 1 and batch_size % devices:
    raise ValueError(
      f"batch_size {batch_size} must be a multiple of the "
      f"{devices} local devices for data-parallel training"
    )


def _train_epoch(train_step, state, data: DeviceData, order, batch_size: int, epoch_key):
  """One epoch of steps over the rows in ``order``; returns the state and the device-side
  ``[loss sum, correct count]``. Nothing is read back: steps queue up on the device."""
  plan, cuts = _plan(data, order, batch_size)
  sums = jnp.zeros(2, jnp.float32)
  for step, cut in enumerate(cuts):
    state, sums = train_step(state, sums, data.x, data.y, plan, step, epoch_key, cut=cut)
  return state, sums


def _copy(tree):
  """Fresh device buffers: what a donated train state may not share with anything kept."""
  return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), tree)


def fit(
  model: jaxnets.Model,
  x_train,
  y_train,
  x_val,
  y_val,
  config: TrainConfig,
  *,
  checkpoint_dir: str | None = None,
  params: dict | None = None,
  log: Callable[[str], None] = print,
  stop_after_epoch: int | None = None,
  on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
  """Trains ``model``'s architecture from fresh (or given) parameters.

  Args:
    model: a jaxnets classifier (its ``params`` are ignored unless passed as
      ``params``); text models take raw strings through their preprocessor.
    x_train, y_train, x_val, y_val: inputs as ``model.predict`` takes them and
      integer class labels; ``x_val=None`` trains without validation (and
      without early stopping).
    config: the run's hyper-parameters.
    checkpoint_dir: where an orbax checkpoint is written after every epoch;
      if it already holds one, training resumes from it.
    params: initial parameters (default: ``model.init`` with Keras's
      initialisers and ``config.seed``).
    log: receives one progress line per epoch.
    stop_after_epoch: stop (as if killed) after this epoch; for resume tests.
    on_epoch_end: called after each epoch with the 1-based epoch and that
      epoch's ``loss``, ``accuracy``, ``learning_rate`` (and ``val_loss``,
      ``val_accuracy`` with validation data); e.g. a TensorBoard writer.
  """
  train_model = logits_model(model)
  has_validation = x_val is not None
  if not has_validation and config.patience is not None:
    raise ValueError("early stopping (patience) needs validation data")
  if not has_validation:
    x_val, y_val = x_train[:0], np.zeros(0, np.int32)
  x_train, x_val = model.prepare_inputs(x_train), model.prepare_inputs(x_val)
  y_train, y_val = np.asarray(y_train, np.int32), np.asarray(y_val, np.int32)
  if len(x_train) != len(y_train) or len(x_val) != len(y_val):
    raise ValueError(
      f"inputs and labels differ in length: train {len(x_train)} vs "
      f"{len(y_train)}, validation {len(x_val)} vs {len(y_val)}"
    )
  _check_batch_size(config.batch_size)
  rng = jax.random.PRNGKey(config.seed)
  if params is None:
    params = model.init(jax.random.fold_in(rng, 0))
  # Copies: the state is donated to every step, and the caller's params must survive that.
  state = TrainState.create(
    apply_fn=train_model.apply,
    params=_copy(params),
    tx=make_optimizer(config),
    best_params=_copy(params),
  )
  meta = {
    "epoch": 0,
    "best_score": float("inf"),
    "best_epoch": 0,
    "wait": 0,
    "history": {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []},
    "epoch_times": [],
  }

  manager = None
  if checkpoint_dir is not None:
    manager = _checkpoint_manager(checkpoint_dir)
    if manager.latest_step() is not None:
      state, meta = _restore(manager, state)
      log(f"resumed from {checkpoint_dir} after epoch {meta['epoch']}")

  if jax.local_device_count() > 1:
    state = jax.device_put(state, batching.replicated_sharding())

  trim = train_model.trims_padding
  train_data = _to_device(x_train, y_train, trim)
  val_data = _to_device(x_val, y_val, trim) if has_validation else None
  train_step, eval_step = _make_steps(train_model.apply)
  history = meta["history"]

  while meta["epoch"] < config.epochs:
    epoch = meta["epoch"] + 1
    start = time.perf_counter()
    order = np.random.default_rng([config.seed, epoch]).permutation(len(x_train))
    epoch_key = jax.random.fold_in(rng, epoch)
    state, sums = _train_epoch(train_step, state, train_data, order, config.batch_size, epoch_key)
    total, correct = np.asarray(sums)  # the epoch's one read-back (waits for its steps)
    loss, accuracy = float(total) / len(x_train), float(correct) / len(x_train)
    history["loss"].append(loss)
    history["accuracy"].append(accuracy)
    line = f"loss: {loss:.4f} - accuracy: {accuracy:.4f}"
    if has_validation:
      val_loss, val_accuracy = _evaluate(eval_step, state.params, val_data, config.batch_size)
      history["val_loss"].append(val_loss)
      history["val_accuracy"].append(val_accuracy)
      line += f" - val_loss: {val_loss:.4f} - val_accuracy: {val_accuracy:.4f}"
      # Lower is better for both scores (accuracy enters negated); ties keep
      # the earlier epoch, as Keras's EarlyStopping does.
      score = val_loss if config.monitor == "val_loss" else -val_accuracy
      improved = score < meta["best_score"]
      if improved:
        meta.update(best_score=score, best_epoch=epoch, wait=0)
        # A copy: the next step donates (reuses) the buffers of state.params.
        state = state.replace(best_params=_copy(state.params))
      else:
        meta["wait"] += 1
    else:
      meta["best_epoch"] = epoch
    elapsed = time.perf_counter() - start
    meta["epoch_times"].append(elapsed)
    meta["epoch"] = epoch
    log(f"Epoch {epoch}/{config.epochs} - {elapsed:.1f}s - {line}")
    if on_epoch_end is not None:
      metrics = {name: values[-1] for name, values in history.items() if values}
      on_epoch_end(epoch, {**metrics, "learning_rate": float(config.learning_rate)})
    # Keras's rule: stop once `patience` epochs in a row brought no improvement.
    stop = (
      config.patience is not None
      and has_validation
      and meta["wait"] > 0
      and meta["wait"] >= config.patience
    )
    if manager is not None:
      _save(manager, epoch, state, meta)
    if stop:
      log(
        f"early stopping: no {config.monitor} improvement for {config.patience} epochs; "
        f"best epoch {meta['best_epoch']}"
      )
      break
    if stop_after_epoch is not None and epoch >= stop_after_epoch:
      break
  if manager is not None:
    manager.wait_until_finished()
  if not has_validation:
    history = {k: v for k, v in history.items() if not k.startswith("val_")}

  final = (
    state.best_params if (config.patience is not None and config.restore_best) else state.params
  )
  times = meta["epoch_times"]
  # Steady-state throughput: the first epoch of a fresh run includes compilation.
  steady = times[1:] if len(times) > 1 else times
  samples_per_second = len(x_train) / (sum(steady) / len(steady)) if steady else 0.0
  return FitResult(
    params=jax.tree_util.tree_map(np.asarray, final),
    history=history,
    epochs_run=meta["epoch"],
    best_epoch=meta["best_epoch"],
    train_time=float(sum(times)),
    samples_per_second=samples_per_second,
    epoch_times=[float(t) for t in times],
  )


def _evaluate(eval_step, params, data: DeviceData, batch_size: int) -> tuple[float, float]:
  plan, cuts = _plan(data, np.arange(data.rows), batch_size)
  sums = jnp.zeros(2, jnp.float32)
  for step, cut in enumerate(cuts):
    sums = eval_step(params, sums, data.x, data.y, plan, step, cut=cut)
  total, correct = np.asarray(sums)
  return float(total) / data.rows, float(correct) / data.rows


def _checkpoint_manager(directory: str):
  return ocp.CheckpointManager(
    os.path.abspath(directory), options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
  )


def _save(manager, epoch: int, state: TrainState, meta: dict) -> None:
  arrays = {
    "params": state.params,
    "best_params": state.best_params,
    "opt_state": state.opt_state,
    "step": state.step,
  }
  manager.save(
    epoch,
    args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
  )


def _restore(manager, state: TrainState) -> tuple[TrainState, dict]:
  template = {
    "params": state.params,
    "best_params": state.best_params,
    "opt_state": state.opt_state,
    "step": state.step,
  }
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  restored = manager.restore(
    manager.latest_step(),
    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
  )
  arrays = restored["state"]
  state = state.replace(
    params=arrays["params"],
    best_params=arrays["best_params"],
    opt_state=arrays["opt_state"],
    step=arrays["step"],
  )
  return state, dict(restored["meta"])


def epoch_runner(model: jaxnets.Model, x, y, config: TrainConfig) -> Callable[[], float]:
  """A zero-argument function that trains one more epoch and blocks until done.

  For throughput measurements (``python -m bench --preset=train_speed``): the jitted step is
  built once, so after the first call no compilation is timed. Returns the
  epoch's mean training loss.
  """
  train_model = logits_model(model)
  x, y = model.prepare_inputs(x), np.asarray(y, np.int32)
  _check_batch_size(config.batch_size)
  params = model.init(jax.random.PRNGKey(config.seed))
  box = {
    "state": TrainState.create(
      apply_fn=train_model.apply, params=params, tx=make_optimizer(config), best_params=None
    ),
    "epoch": 0,
  }
  data = _to_device(x, y, train_model.trims_padding)
  train_step, _ = _make_steps(train_model.apply)
  rng = jax.random.PRNGKey(config.seed)

  def run_epoch() -> float:
    box["epoch"] += 1
    order = np.random.default_rng([config.seed, box["epoch"]]).permutation(len(x))
    epoch_key = jax.random.fold_in(rng, box["epoch"])
    box["state"], sums = _train_epoch(
      train_step, box["state"], data, order, config.batch_size, epoch_key
    )
    return float(sums[0]) / len(x)  # float() blocks until the epoch is computed

  return run_epoch
