"""Record for Keras ``TextVectorization`` <-> ``jaxnets.text.TextVectorizer``.

The port makes it the model's host-side preprocessor (``port.api``). Only what
``TextVectorizer`` reproduces token for token is accepted: the built-in
standardize modes, whitespace/character split, ``output_mode="int"``, no
n-grams, dense (not ragged/sparse) output, UTF-8.

An adapted vocabulary is layer state, not config, so ``build`` makes a
vocabulary-less placeholder (enough to check the options) and the weights
half returns the finished preprocessor built from ``get_vocabulary()``.
"""

import dataclasses

from jaxnets import text
from port import registry
from port.converters import core as core_converters


def _vectorizer(keras_layer, built):
  placeholder = built[0]
  vocabulary = tuple(str(token) for token in keras_layer.get_vocabulary())
  if vocabulary[:2] != (text.PAD_TOKEN, text.OOV_TOKEN):
    raise registry.UnsupportedLayerError(
      keras_layer.name,
      type(keras_layer).__name__,
      f"vocabulary must start with {text.PAD_TOKEN!r}, {text.OOV_TOKEN!r} (the default "
      f"mask and OOV tokens); got {list(vocabulary[:2])}",
    )
  return {placeholder.name: dataclasses.replace(placeholder, vocabulary=vocabulary)}


def text_vectorization(cfg):
  cfg.ignore("dtype")  # the layer computes on strings; its dtype policy changes no id
  standardize = cfg.get("standardize", "lower_and_strip_punctuation")
  if standardize not in text.STANDARDIZE_MODES:
    raise cfg.error(
      f"option standardize={standardize!r:.80} is not supported (supported: "
      "'lower_and_strip_punctuation', 'lower', 'strip_punctuation', None; "
      "custom callables cannot be ported)"
    )
  split = cfg.get("split", "whitespace")
  if split not in text.SPLIT_MODES:
    raise cfg.error(
      f"option split={split!r:.80} is not supported (supported: "
      "'whitespace', 'character'; None and custom callables cannot be ported)"
    )
  cfg.expect("ngrams", None)
  cfg.expect("output_mode", "int", default="int")
  cfg.expect("ragged", False, default=False)
  cfg.expect("sparse", False, default=False)
  cfg.expect("idf_weights", None)
  encoding = cfg.get("encoding", "utf-8")
  if str(encoding).lower().replace("-", "") != "utf8":
    raise cfg.error(f"option encoding={encoding!r} is not supported (only utf-8)")
  # pad_to_max_tokens only shapes multi_hot/count/tf_idf outputs, not "int".
  cfg.ignore("pad_to_max_tokens")
  # The vocabulary (given or adapted) and its size are read from the layer
  # itself by the weights half; the config copy may be None or a file path.
  cfg.ignore("vocabulary", "vocabulary_size")
  length = cfg.get("output_sequence_length")
  if length is not None and (not isinstance(length, int) or length < 1):
    raise cfg.error(f"option output_sequence_length={length!r} must be a positive int or None")
  max_tokens = cfg.get("max_tokens")
  return [
    text.TextVectorizer(
      name=cfg.layer_name,
      vocabulary=(text.PAD_TOKEN, text.OOV_TOKEN),
      standardize=standardize,
      split=split,
      output_sequence_length=length,
      max_tokens=None if max_tokens is None else int(max_tokens),
    )
  ]


def _to_keras(keras, vectorizer):
  # Keras re-adds the padding '' and OOV '[UNK]' tokens in front of the
  # vocabulary it is given, so they are passed without them.
  return keras.layers.TextVectorization(
    max_tokens=vectorizer.max_tokens,
    standardize=vectorizer.standardize,
    split=vectorizer.split,
    output_mode="int",
    output_sequence_length=vectorizer.output_sequence_length,
    vocabulary=list(vectorizer.vocabulary[2:]),
    name=vectorizer.name,
  )


# Tokenising runs on the host, outside the compiled model: no FLOPs counted.
registry.register(
  registry.LayerRecord(
    layer=text.TextVectorizer,
    keras_class="TextVectorization",
    build=text_vectorization,
    weights=_vectorizer,
    to_keras=_to_keras,
    flops=core_converters.free_flops,
  )
)
