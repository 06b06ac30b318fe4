"""Host-side batching: validated input rows -> padded, length-cut, sharded batches.

``Model.predict`` feeds its rows through a ``Batcher``, after
``Model.prepare_inputs`` has validated them (rank, shape, dtype, token-id range)
and tokenised any strings. The JAX trainer (``train/jax_trainer.py``) follows the
same rules on the device: its data is put there once and each jitted step gathers
its batch (the epoch's shuffle, the cut of ``bucketed_length``, zero rows of
weight 0 for a partial batch, the rows split over the devices):

1. order: ``predict`` sorts text rows by real length (``length_order``), so
   each batch holds rows of similar length, and puts its outputs back in the
   caller's order afterwards (``unsort``); the trainer passes its epoch's
   shuffle instead.
2. cut: with ``trim``, a batch of token ids is cut to its longest real
   sequence rounded up to ``LENGTH_BUCKET`` (``bucketed_length``), so at most
   ``max_len / LENGTH_BUCKET`` lengths are ever compiled. Exact only for a
   model whose layers carry their state unchanged over trailing padding
   (``Model.trims_padding``).
3. pad: a partial batch is filled with zero rows, to ``batch_size`` (training:
   one compiled shape) or, with ``shrink_partial``, to the next power of two
   (inference: a 1-row input stays cheap); then up to a multiple of the local
   device count.
4. shard: with several local devices, every array of the batch is split along
   its first axis over all of them (``batch_sharding``). On one device the
   arrays stay numpy: a jitted call takes them directly, and an explicit
   ``jnp.asarray`` first would cost an extra dispatch (~60 us at batch 1).
"""

import dataclasses
from typing import Iterator, Sequence

import jax
import numpy as np

# Padded text batches are cut to their longest real sequence rounded up to a
# multiple of this: a trade between compiled shapes and wasted padded steps.
LENGTH_BUCKET = 8

_AXIS = "batch"


def check_batch_size(batch_size) -> int:
  """``batch_size`` as an int; ``ValueError`` unless it is a positive int.

  Only ints are taken (numpy ints too): ``None``, ``2.7``, ``"8"`` and ``True``
  are refused rather than rounded or coerced.
  """
  if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
    raise ValueError(
      f"batch_size must be a positive int, got {batch_size!r} ({type(batch_size).__name__})"
    )
  if batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size}")
  return int(batch_size)


def real_lengths(tokens: np.ndarray) -> np.ndarray:
  """Index of the last non-zero token + 1 per row (0 for an all-padding row)."""
  nonzero = tokens.reshape(tokens.shape[0], -1) != 0
  flipped_first = np.argmax(nonzero[:, ::-1], axis=1)
  return np.where(nonzero.any(axis=1), nonzero.shape[1] - flipped_first, 0)


def length_order(lengths: np.ndarray) -> np.ndarray:
  """Row indices sorted by length, shortest first (stable: ties keep their order)."""
  return np.argsort(lengths, kind="stable")


def unsort(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
  """Undoes ``values = original[order]`` along the first axis (``None``: no reordering)."""
  if order is None:
    return values
  restored = np.empty_like(values)
  restored[order] = values
  return restored


def bucketed_length(longest: int, max_length: int) -> int:
  """``longest`` rounded up to a multiple of ``LENGTH_BUCKET``, at most ``max_length``."""
  return min(max_length, max(LENGTH_BUCKET, -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET))


def padded_rows(rows: int, batch_size: int, devices: int, shrink_partial: bool) -> int:
  """Rows a batch of ``rows`` real rows is padded to (see step 3 above)."""
  size = batch_size
  if shrink_partial and rows != batch_size:
    size = min(batch_size, 1 << (rows - 1).bit_length())
  return -(-size // devices) * devices


def data_parallel_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every local device, its axis named ``"batch"``."""
  return jax.sharding.Mesh(np.array(jax.local_devices()), (_AXIS,))


def batch_sharding() -> jax.sharding.NamedSharding:
  """Splits an array's first (batch) axis over every local device."""
  return jax.sharding.NamedSharding(data_parallel_mesh(), jax.sharding.PartitionSpec(_AXIS))


def replicated_sharding() -> jax.sharding.NamedSharding:
  """A full copy on every local device (parameters under data parallelism)."""
  return jax.sharding.NamedSharding(data_parallel_mesh(), jax.sharding.PartitionSpec())


@dataclasses.dataclass(frozen=True)
class Batch:
  """One batch: ``arrays`` (the inputs, then each per-row array) and how many
  of their leading rows are real (the rest are zero padding)."""

  arrays: tuple
  rows: int


class Batcher:
  """Cuts rows into padded, optionally length-cut and sharded batches.

  Args:
    x: validated inputs, one row per example (``Model.prepare_inputs``).
    batch_size: rows per batch.
    per_row: more arrays indexed like ``x`` (labels, weights); each batch
      carries them after the inputs, padded with zero rows likewise.
    trim: cut each batch of token ids to its longest real sequence (rounded
      up to ``LENGTH_BUCKET``); only for models with ``trims_padding``.
    shrink_partial: pad a partial batch to the next power of two rather than
      to ``batch_size``.
  """

  def __init__(
    self,
    x: np.ndarray,
    batch_size: int,
    *,
    per_row: Sequence[np.ndarray] = (),
    trim: bool = False,
    shrink_partial: bool = False,
  ):
    self.batch_size = check_batch_size(batch_size)
    self.arrays = (x,) + tuple(per_row)
    if any(len(a) != len(x) for a in self.arrays):
      raise ValueError(
        f"every per-row array needs {len(x)} rows, got {[len(a) for a in self.arrays]}"
      )
    self.trim = trim
    self.shrink_partial = shrink_partial
    self.lengths = real_lengths(x) if trim else None
    self.devices = jax.local_device_count()
    self.sharding = batch_sharding() if self.devices > 1 else None

  def __len__(self) -> int:
    """Number of batches."""
    return -(-len(self.arrays[0]) // self.batch_size)

  def length_order(self) -> np.ndarray | None:
    """Rows sorted by real length, or ``None`` (keep the given order) without ``trim``."""
    return None if self.lengths is None else length_order(self.lengths)

  def __call__(self, order: np.ndarray | None = None) -> Iterator[Batch]:
    """The batches of the rows in ``order`` (a permutation; ``None``: as given)."""
    n = len(self.arrays[0])
    for start in range(0, n, self.batch_size):
      if order is None:  # slices are views: no copy of a large float input
        index = slice(start, start + self.batch_size)
      else:
        index = order[start : start + self.batch_size]
      arrays = [a[index] for a in self.arrays]
      rows = len(arrays[0])
      if self.trim:
        cut = bucketed_length(int(self.lengths[index].max()), arrays[0].shape[1])
        arrays[0] = arrays[0][:, :cut]
      missing = padded_rows(rows, self.batch_size, self.devices, self.shrink_partial) - rows
      if missing:
        arrays = [np.concatenate([a, np.zeros((missing,) + a.shape[1:], a.dtype)]) for a in arrays]
      if self.sharding is not None:
        arrays = [jax.device_put(a, self.sharding) for a in arrays]
      yield Batch(tuple(arrays), rows)
