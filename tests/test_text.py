"""TextVectorizer: token ids identical to Keras TextVectorization; the ported
text model takes raw strings, saves and loads without TensorFlow."""

import json

import keras
import numpy as np
import pytest

import jaxnets
import port
from jaxnets import text
from port import api
from tests import parity

L = keras.layers

TRICKY = [
  "",
  " ",
  "   \t\n  ",
  "Saya SUKA makanan ini!!!",
  "harga-nya  mahal... (sekali)",
  "don't stop",
  "a,b.c;d:e?f",
  "#tag @user $100 50% a&b *x* +1 =2 <3> [4] {5} |6| ~7 `8` ^9 _0",
  'back\\slash /slash "quoted"',
  "tab\tseparated\tvalues",
  "new\nline\r\nwindows",
  "vertical\x0btab\x0cform feed",
  "ÉCOLE Ünïcödé ΑΒΓ İstanbul STRAẞE Ǆ",
  "nbsp\u00a0joined em\u2003space ideographic\u3000space",
  "zero\u200bwidth",
  "file\x1cseparator unit\x1fsep next\x85line",
  "“curly” ‘quotes’ — dash … ellipsis «guillemets»",
  "emoji 😀👍🏽 combined é vs é",
  "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ",
  "[UNK] [unk] unk",
  "mañana jalapeño ÑANDÚ",
  "12,000.50 rupiah",
  "    leading and trailing    ",
  "MiXeD CaSe WoRdS",
  "!!!",
  "x" * 50,
]


def keras_ids(layer, texts):
  return np.asarray(layer(np.asarray(texts, dtype=object))).astype(np.int64)


def ported(layer) -> text.TextVectorizer:
  built, problems = api.check_layers([layer])
  assert not problems, problems
  keras_layer, converter, result = built[0]
  return converter.weights(keras_layer, result)[layer.name]


def assert_same_ids(layer, texts):
  vectorizer = ported(layer)
  expected = keras_ids(layer, texts)
  got = vectorizer(list(texts))
  assert got.dtype == np.int32
  assert got.shape == expected.shape, (got.shape, expected.shape)
  mismatch = np.nonzero((got != expected).any(axis=1))[0]
  assert not mismatch.size, [
    (texts[i], got[i].tolist(), expected[i].tolist()) for i in mismatch[:3]
  ]
  return vectorizer


CORPUS = [
  "Saya suka makanan ini",
  "makanan ini ENAK sekali!",
  "harga-nya mahal",
  "tidak suka, tidak enak.",
  "ÉCOLE école Über",
  "saya saya saya",
]


@pytest.mark.parametrize(
  "standardize", ["lower_and_strip_punctuation", "lower", "strip_punctuation", None]
)
@pytest.mark.parametrize("split", ["whitespace", "character"])
@pytest.mark.parametrize("output_sequence_length", [None, 7])
def test_tricky_strings_match_keras(standardize, split, output_sequence_length):
  layer = L.TextVectorization(
    standardize=standardize, split=split, output_sequence_length=output_sequence_length
  )
  layer.adapt(CORPUS + TRICKY[::2])
  assert_same_ids(layer, TRICKY + CORPUS)


def test_given_vocabulary_and_truncation_match_keras():
  vocabulary = ["saya", "suka", "makanan", "Saya", "ini!", "école", "ÉCOLE", "😀👍🏽"]
  layer = L.TextVectorization(vocabulary=vocabulary, output_sequence_length=3)
  vectorizer = assert_same_ids(layer, TRICKY + CORPUS)
  assert vectorizer.vocabulary[:2] == ("", "[UNK]")
  assert vectorizer(["saya suka makanan ini enak"]).tolist() == [[2, 3, 4]]


def test_all_empty_batch_matches_keras():
  layer = L.TextVectorization()
  layer.adapt(CORPUS)
  assert_same_ids(layer, ["", "  ", "!!!"])


@pytest.mark.parametrize("max_tokens,output_sequence_length", [(None, None), (2000, 40)])
def test_nusax_all_languages_match_keras(real_data_dir, max_tokens, output_sequence_length):
  from train import data  # pylint: disable=import-outside-toplevel

  texts = []
  for lang in data.NUSAX_LANGUAGES:
    nusax = data.load_nusax(lang, real_data_dir)
    texts += [t for split in data.NUSAX_SPLITS for t in nusax.split(split)[0]]
  assert len(texts) == 12 * 1000
  layer = L.TextVectorization(max_tokens=max_tokens, output_sequence_length=output_sequence_length)
  layer.adapt(texts[::2])  # half the texts: the rest bring out-of-vocabulary tokens
  vectorizer = assert_same_ids(layer, texts)
  if max_tokens:
    assert vectorizer.vocabulary_size == max_tokens


def test_config_round_trip():
  layer = L.TextVectorization(max_tokens=50, output_sequence_length=6, standardize="lower")
  layer.adapt(CORPUS)
  vectorizer = ported(layer)
  config = json.loads(json.dumps(vectorizer.get_config()))
  again = text.TextVectorizer.from_config(config)
  assert again == vectorizer
  np.testing.assert_array_equal(again(TRICKY), keras_ids(layer, TRICKY))
  assert "vocabulary_size=" in repr(again) and "saya" not in repr(again)


@pytest.mark.parametrize(
  "kwargs,culprit",
  [
    ({"ngrams": 2}, "ngrams=2"),
    ({"output_mode": "multi_hot"}, "output_mode='multi_hot'"),
    ({"output_mode": "tf_idf"}, "output_mode='tf_idf'"),
    ({"output_mode": "count"}, "output_mode='count'"),
    ({"standardize": keras.ops.convert_to_tensor}, "standardize="),
    ({"split": None}, "split=None"),
    ({"ragged": True}, "ragged=True"),
  ],
)
def test_unsupported_options_are_rejected(kwargs, culprit):
  layer = L.TextVectorization(name="tv", **kwargs)
  problems = api.check_layers([layer])[1]
  assert len(problems) == 1
  name, class_name, reason = problems[0]
  assert (name, class_name) == ("tv", "TextVectorization")
  assert culprit in reason, reason


def test_text_vectorizer_rejects_bad_arguments():
  with pytest.raises(ValueError, match="must start with"):
    text.TextVectorizer(vocabulary=("a", "b"))
  with pytest.raises(ValueError, match="split='tab'"):
    text.TextVectorizer(vocabulary=("", "[UNK]"), split="tab")
  with pytest.raises(TypeError, match="single str"):
    text.TextVectorizer(vocabulary=("", "[UNK]"))("one string")


# ------------------------------------------------------------ text models
def text_model(output_sequence_length=12, vocabulary_slack=0):
  vectorizer = L.TextVectorization(max_tokens=40, output_sequence_length=output_sequence_length)
  vectorizer.adapt(CORPUS + TRICKY)
  model = keras.Sequential(
    [
      keras.Input((1,), dtype="string"),
      vectorizer,
      L.Embedding(vectorizer.vocabulary_size() - vocabulary_slack, 6, mask_zero=True),
      L.Bidirectional(L.LSTM(4, return_sequences=True)),
      L.GRU(3),
      L.Dense(3, activation="softmax"),
    ]
  )
  parity.randomize_weights(model, seed=21)
  return model


@pytest.mark.parametrize("output_sequence_length", [12, None])
def test_text_model_takes_raw_strings(output_sequence_length):
  keras_model = text_model(output_sequence_length)
  texts = np.asarray(TRICKY + CORPUS, dtype=object)
  model = parity.assert_matches_keras(keras_model, texts, batch_size=4)
  assert model.input_dtype == "string"
  assert model.trims_padding
  np.testing.assert_array_equal(model.predict(list(texts)), model.predict(texts[:, None]))
  with pytest.raises(jaxnets.InputError, match="single str"):
    model.predict("saya suka")
  assert "Preprocessor: TextVectorizer(" in model.summary()


def test_saved_keras_file_ports_with_its_adapted_vocabulary(tmp_path):
  keras_model = text_model()
  keras_model.save(tmp_path / "text.keras")
  model = port.load(tmp_path / "text.keras")
  texts = TRICKY + CORPUS
  expected = np.asarray(keras_model(np.asarray(texts, dtype=object)))
  parity.assert_outputs_match(
    keras_model, model.predict(texts), np.asarray(texts, dtype=object), keras_outputs=expected
  )
  assert model.preprocessor.vocabulary == tuple(keras_model.layers[0].get_vocabulary())


def test_token_ids_beyond_the_embedding_are_rejected():
  model = port.load(text_model(vocabulary_slack=5))
  vocabulary_size = model.preprocessor.vocabulary_size
  rare = model.preprocessor.vocabulary[-1]
  with pytest.raises(
    jaxnets.InputError,
    match=rf"token id {vocabulary_size - 1} .*"
    rf"\[0, {vocabulary_size - 5}\)",
  ):
    model.predict(["saya", f"saya {rare}"])


def test_saved_text_model_runs_without_tensorflow(tmp_path):
  keras_model = text_model()
  texts = TRICKY + CORPUS
  expected = np.asarray(keras_model(np.asarray(texts, dtype=object)))
  port.load(keras_model).save(tmp_path / "model")
  got = parity.predict_saved_without_tensorflow(tmp_path / "model", texts, tmp_path, batch_size=256)
  parity.assert_outputs_match(
    keras_model, got, np.asarray(texts, dtype=object), keras_outputs=expected
  )
