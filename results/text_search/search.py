"""The text-recipe search behind ``train/recipes.py``'s LSTM and SimpleRNN (issue 15).

A scratch script kept for provenance, not part of the package: it trains one
configuration of the NusaX-Senti text model in Keras for each seed, on the
same data files, vectoriser settings, input pipeline (``train.keras_inputs``)
and per-run seeding as ``python -m train``, and appends one JSON line per seed (the configuration, the Indonesian test macro
F1, the epochs run and the best epoch, training seconds) to ``--out``.
``search.jsonl`` beside it holds every line of the search; ``README.md`` sums
it up.

Why it does not call ``train.models.build_text`` / ``train.recipes``: it tried
options the study builder does not have (character split, masked average
pooling, recurrent dropout, class weights), and it is kept as it ran so that
``search.jsonl`` stays reproducible. Two consequences: the model is built here,
and the 12 training files are concatenated in alphabetical language order
(the study puts Indonesian first), so a search run is not the study's run bit
for bit (seed 0 of the LSTM recipe: 0.733 here, 0.715 in the study).

Run from the repository root, e.g.::

  python results/text_search/search.py --cell=rnn --bi=1 --langs=all \\
      --clipnorm=1 --batch=64 --patience=4 --sdrop=0.3 --tag=R_bi_all_sdrop3

Numbers reproduce on the same CPU type only (AVX2 here). The recipes' own
figures come from the ``best`` studies (``python -m train --study=best``), not
from this script.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from train import data, keras_inputs  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--cell", default="lstm")
p.add_argument("--split", default="whitespace")
p.add_argument("--seq", type=int, default=64)
p.add_argument("--emb", type=int, default=64)
p.add_argument("--units", default="64")
p.add_argument("--bi", type=int, default=1)
p.add_argument("--langs", default="id")  # id | all | comma list
p.add_argument("--head", default="last")
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--patience", type=int, default=5)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--dropout", type=float, default=0.5)
p.add_argument("--rec_dropout", type=float, default=0.0)
p.add_argument("--sdrop", type=float, default=0.0)
p.add_argument("--clipnorm", type=float, default=0.0)
p.add_argument("--monitor", default="val_accuracy")
p.add_argument("--max_tokens", type=int, default=30000)
p.add_argument("--class_weight", type=int, default=0)
p.add_argument("--seeds", default="0,1,2")
p.add_argument("--tag", default="")
p.add_argument("--out", default="runs/text_search.jsonl")
p.add_argument("--data_dir", default=None)
a = p.parse_args()

tf.config.experimental.enable_op_determinism()
ind = data.load_nusax("indonesian", a.data_dir)
if a.langs == "id":
  langs = ["indonesian"]
elif a.langs == "all":
  langs = list(data.NUSAX_LANGUAGES)
else:
  langs = a.langs.split(",")
xs, ys = [], []
for lang in langs:
  d = data.load_nusax(lang, a.data_dir)
  xs.append(d.train_texts)
  ys.append(d.train_labels)
x_train, y_train = np.concatenate(xs), np.concatenate(ys)

for seed in [int(s) for s in a.seeds.split(",")]:
  keras.backend.clear_session()
  keras.utils.set_random_seed(seed)
  vec = keras.layers.TextVectorization(
    max_tokens=a.max_tokens, output_mode="int", output_sequence_length=a.seq, split=a.split
  )
  vec.adapt(np.asarray(x_train, dtype=object))
  layers = [
    keras.Input(shape=(), dtype="string"),
    vec,
    keras.layers.Embedding(vec.vocabulary_size(), a.emb, mask_zero=True),
  ]
  if a.sdrop:
    layers.append(keras.layers.SpatialDropout1D(a.sdrop))
  units = [int(u) for u in a.units.split(",")]
  rnn = keras.layers.LSTM if a.cell == "lstm" else keras.layers.SimpleRNN
  for i, n in enumerate(units, 1):
    seqs = i < len(units) or a.head != "last"
    layer = rnn(n, return_sequences=seqs, recurrent_dropout=a.rec_dropout)
    if a.bi:
      layer = keras.layers.Bidirectional(layer)
    layers.append(layer)
  if a.head == "global_max":
    layers.append(keras.layers.GlobalMaxPooling1D())
  elif a.head == "global_avg":
    layers.append(keras.layers.GlobalAveragePooling1D())
  layers += [keras.layers.Dropout(a.dropout), keras.layers.Dense(3, activation="softmax")]
  model = keras.Sequential(layers)
  clip = {"clipnorm": a.clipnorm} if a.clipnorm else {}
  model.compile(
    optimizer=keras.optimizers.Adam(a.lr, **clip),
    loss=keras.losses.SparseCategoricalCrossentropy(),
    metrics=["accuracy"],
  )
  stop = keras.callbacks.EarlyStopping(
    monitor=a.monitor, patience=a.patience, restore_best_weights=True
  )
  cw = {}
  if a.class_weight:
    counts = np.bincount(y_train, minlength=3)
    cw = {"class_weight": {i: float(len(y_train) / (3 * c)) for i, c in enumerate(counts)}}
  t0 = time.time()
  h = model.fit(
    **keras_inputs.fit_arguments(x_train, y_train, ind.valid_texts, ind.valid_labels, a.batch),
    epochs=a.epochs,
    verbose=0,
    callbacks=[stop],
    **cw,
  )
  t = time.time() - t0
  prob = model.predict(**keras_inputs.predict_arguments(ind.test_texts, 256), verbose=0)
  f1 = f1_score(ind.test_labels, prob.argmax(1), average="macro")
  watched = np.asarray(h.history[a.monitor])
  best = int(np.argmin(watched) if a.monitor.endswith("loss") else np.argmax(watched)) + 1
  rec = dict(
    vars(a), seed=seed, f1=round(float(f1), 4), epochs_run=len(watched), best=best, secs=round(t, 1)
  )
  rec.pop("out")
  print(json.dumps(rec), flush=True)
  os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
  with open(a.out, "a") as f:
    f.write(json.dumps(rec) + "\n")
