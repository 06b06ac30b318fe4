"""Guarded fast paths: exact unless a rare value shows up, then the exact pass.

Some Keras semantics cost a lot to reproduce on every call and matter only for
values that almost never occur. TensorFlow's max pooling is the case that
prompted this: it skips NaN cells and never returns less than the lowest
finite float, so a layer must clean its input (``where(isnan)``) and clamp
its output. On XLA:CPU those two element-wise steps stop the convolution,
bias, ReLU and pooling from fusing into one YNNPACK kernel: the spec CNN's
forward pass took 77 ms instead of 48 ms at batch 256 (2-core AMD EPYC, jax
0.10.2).

A fast pass (``fast_pass``) runs each such layer's *fast* form and has the
layer report a boolean scalar that is true when the fast form may differ from
the exact one; the pass also flags any non-finite value in its inputs, the
only way NaN reaches a layer short of an overflow. The caller then uses the
fast outputs when no flag is set, and otherwise runs the exact pass
(``jaxnets.Model.predict`` does this per batch). Finite inputs pay a few
cheap reductions; non-finite ones pay one exact pass more.

Why two programs and not one ``lax.cond``: inside the same XLA program as the
fast pass, the exact pass's NaN handling changed (a fused ReLU turned NaN
into 0 under YNNPACK), so its answer on NaN inputs was no longer Keras's. A
separately compiled exact pass is the exact pass, bit for bit.

Inside a layer::

    if guards.fast_path_allowed():
      y = cheap(x)
      guards.use_exact_path_if(jnp.any(~(y > -jnp.inf)))
    else:
      y = exact(x)

Outside ``fast_pass`` (a layer applied on its own, training, ``Model.apply``)
``fast_path_allowed()`` is false, so a layer is always exact by itself. The
mode lives in a context variable read at trace time: under ``jit`` it decides
which program is traced, not what runs per call.
"""

import contextvars
from typing import Any, Callable

import jax
import jax.numpy as jnp

# None: tracing an exact pass; a list: tracing a fast pass (the flags raised
# so far).
_MODE: contextvars.ContextVar = contextvars.ContextVar("jaxnets_guard_mode", default=None)


def fast_path_allowed() -> bool:
  """Whether the layer being traced may take its fast form (and must flag)."""
  return isinstance(_MODE.get(), list)


def use_exact_path_if(flag: jax.Array) -> None:
  """Reports a boolean scalar: true when this layer's fast form may be wrong.

  Only valid while ``fast_path_allowed()`` is true.
  """
  flags = _MODE.get()
  if not isinstance(flags, list):
    raise RuntimeError("use_exact_path_if outside a guarded fast pass")
  flags.append(jnp.asarray(flag, dtype=bool).reshape(()))


def fast_pass(forward: Callable[..., Any], *args) -> tuple[Any, jax.Array]:
  """``forward(*args)`` through its layers' fast forms, and whether to redo it.

  Args:
    forward: computes a whole pass from ``args`` (pytrees of arrays).
    *args: ``forward``'s arguments; any non-finite float in them sets the
      flag (the pass's own inputs: NaN and inf reach a layer from there).

  Returns:
    ``(outputs, needs_exact)``: ``needs_exact`` is a boolean scalar, true
    when some layer's fast form may have differed from its exact form; the
    caller must then use the exact pass's outputs instead.
  """
  flags: list = []
  token = _MODE.set(flags)
  try:
    out = forward(*args)
  finally:
    _MODE.reset(token)
  if not flags:
    return out, jnp.zeros((), bool)
  for leaf in jax.tree_util.tree_leaves(args):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      flags.append(jnp.any(~jnp.isfinite(leaf)))
  return out, jnp.any(jnp.stack(flags))


def has_fast_paths(forward: Callable[..., Any], *args) -> bool:
  """Whether any layer of ``forward`` has a fast form (traced abstractly, once)."""
  flags: list = []
  token = _MODE.set(flags)
  try:
    jax.eval_shape(forward, *args)
  finally:
    _MODE.reset(token)
  return bool(flags)
