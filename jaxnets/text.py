"""Keras ``TextVectorization`` (``output_mode="int"``) in pure Python/NumPy.

A ported text model's host-side preprocessor: raw strings -> token ids
``int32 (batch, length)``, identical to the Keras layer's output (Keras gives
int64). It runs before the compiled model and needs neither TensorFlow nor
Keras, so a saved model takes raw strings after ``jaxnets.load``.

What Keras does, and so what this does (TensorFlow string ops, checked
against TensorFlow 2.21):

1. standardize: ``tf.strings.lower`` lower-cases ASCII ``A-Z`` only (its
   default encoding ``''`` leaves every non-ASCII character as it is), then
   ``tf.strings.regex_replace`` deletes the 32 ASCII punctuation characters
   ``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~`` (non-ASCII punctuation stays).
2. split: ``tf.strings.split`` splits on runs of the six ASCII whitespace
   characters (space, ``\\t \\n \\v \\f \\r``) and drops empty tokens; Unicode
   spaces (NBSP, U+2003, ...) are part of tokens. ``"character"`` splits into
   Unicode code points.
3. look up: index in the vocabulary, whose entry 0 is the padding token ``''``
   and entry 1 the out-of-vocabulary token ``'[UNK]'`` (unknown tokens -> 1).
4. shape: with ``output_sequence_length`` L, keep the first L ids and pad with
   0 at the end; without it, pad to the longest row of the batch.
"""

import dataclasses
import functools
import re
import string
from typing import Any, Sequence

import numpy as np

from jaxnets.layers import base

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # == string.punctuation
_STRIP_PUNCTUATION = str.maketrans("", "", PUNCTUATION)
_LOWER_ASCII = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_WHITESPACE = re.compile("[ \t\n\v\f\r]+")

STANDARDIZE_MODES = ("lower_and_strip_punctuation", "lower", "strip_punctuation", None)
SPLIT_MODES = ("whitespace", "character")
PAD_TOKEN, OOV_TOKEN = "", "[UNK]"


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class TextVectorizer:
  """Strings -> ``int32 (batch, length)`` token ids, as Keras TextVectorization.

  Args:
    name: the Keras layer's name.
    vocabulary: every token by id, starting ``('', '[UNK]', ...)``.
    standardize: ``"lower_and_strip_punctuation"`` (Keras's default),
      ``"lower"``, ``"strip_punctuation"`` or ``None``.
    split: ``"whitespace"`` or ``"character"``.
    output_sequence_length: pad/truncate every row to this length, or ``None``
      to pad to the batch's longest row.
    max_tokens: the vocabulary cap the layer was adapted with (for the record;
      the vocabulary already respects it).
  """

  name: str = "text_vectorization"
  vocabulary: tuple[str, ...]
  standardize: str | None = "lower_and_strip_punctuation"
  split: str = "whitespace"
  output_sequence_length: int | None = None
  max_tokens: int | None = None

  def __post_init__(self):
    if self.standardize not in STANDARDIZE_MODES:
      raise ValueError(
        f"TextVectorizer {self.name!r}: standardize={self.standardize!r} "
        f"is not supported (supported: {STANDARDIZE_MODES})"
      )
    if self.split not in SPLIT_MODES:
      raise ValueError(
        f"TextVectorizer {self.name!r}: split={self.split!r} "
        f"is not supported (supported: {SPLIT_MODES})"
      )
    vocabulary = tuple(self.vocabulary)
    if vocabulary[:2] != (PAD_TOKEN, OOV_TOKEN):
      raise ValueError(
        f"TextVectorizer {self.name!r}: the vocabulary must start with "
        f"{PAD_TOKEN!r}, {OOV_TOKEN!r}; got {list(vocabulary[:2])}"
      )
    object.__setattr__(self, "vocabulary", vocabulary)

  @functools.cached_property
  def _ids(self) -> dict[str, int]:
    # Index 1 for the OOV token itself, as Keras's lookup table gives it.
    return {token: i for i, token in enumerate(self.vocabulary)}

  @property
  def vocabulary_size(self) -> int:
    return len(self.vocabulary)

  def standardize_text(self, text: str) -> str:
    if self.standardize in ("lower", "lower_and_strip_punctuation"):
      text = text.translate(_LOWER_ASCII)
    if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
      text = text.translate(_STRIP_PUNCTUATION)
    return text

  def tokenize(self, text: str) -> list[str]:
    """The tokens of one string after standardisation and splitting."""
    text = self.standardize_text(text)
    if self.split == "character":
      return list(text)
    return [token for token in _ASCII_WHITESPACE.split(text) if token]

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    """Token ids ``int32 (len(texts), length)``, 0 = padding, 1 = unknown."""
    if isinstance(texts, str):
      raise TypeError(f"TextVectorizer {self.name!r} takes a sequence of strings, got a single str")
    for i, text in enumerate(texts):
      if not isinstance(text, str):  # str() would make b"..." or None a token
        raise TypeError(
          f"TextVectorizer {self.name!r} takes strings; item {i} is "
          f"{type(text).__name__} {text!r:.40}"
        )
    lookup = self._ids
    rows = [[lookup.get(token, 1) for token in self.tokenize(text)] for text in texts]
    length = self.output_sequence_length
    if length is None:
      length = max((len(row) for row in rows), default=0)
    out = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
      row = row[:length]
      out[i, : len(row)] = row
    return out

  def __repr__(self) -> str:
    return (
      f"TextVectorizer(name={self.name!r}, vocabulary_size={self.vocabulary_size}, "
      f"standardize={self.standardize!r}, split={self.split!r}, "
      f"output_sequence_length={self.output_sequence_length})"
    )

  def get_config(self) -> dict[str, Any]:
    return {
      "name": self.name,
      "vocabulary": list(self.vocabulary),
      "standardize": self.standardize,
      "split": self.split,
      "output_sequence_length": self.output_sequence_length,
      "max_tokens": self.max_tokens,
    }

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> "TextVectorizer":
    return cls(**base.checked_options(cls, config))
