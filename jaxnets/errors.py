"""Errors a jaxnets user can catch; a leaf module, so every other module may import it."""


class InputError(ValueError):
  """Input to ``Model.predict``/``Model.__call__`` that the model cannot take.

  Raised on the host, before anything is compiled: wrong rank, shape or dtype,
  a single string where a batch of strings is expected, token ids outside the
  embedding's vocabulary. The message names what was expected.
  """
