"""Load every dataset once and print what was loaded.

    python -m train.smoke --data_dir ../shared/data
    JAXNETS_DATA_DIR=../shared/data python -m train.smoke

Prints shapes, dtypes, value ranges and label counts for MNIST, CIFAR-10 (with the
seeded, stratified train/val split) and NusaX-Senti, then ``data loaded OK``.
Exits non-zero with a one-line message when a dataset is missing or malformed.
"""

import sys

import numpy as np
from absl import app
from absl import flags as absl_flags

from flags import common as common_flags
from train import data

_DATASETS = absl_flags.DEFINE_multi_enum(
  "datasets",
  ["mnist", "cifar10", "nusax"],
  ["mnist", "cifar10", "nusax"],
  "Datasets to load (repeat the flag for several).",
)
_NUSAX_LANGS = absl_flags.DEFINE_multi_enum(
  "nusax_lang",
  ["indonesian"],
  list(data.NUSAX_LANGUAGES),
  "NusaX-Senti language(s) to load (repeat the flag for several).",
)


def _counts(y: np.ndarray, n: int) -> str:
  return "[" + " ".join(str(c) for c in np.bincount(y, minlength=n)) + "]"


def _arr(name: str, x: np.ndarray) -> str:
  desc = f"{name} {tuple(x.shape)} {x.dtype}"
  if x.dtype != object and x.size:
    desc += f" range [{x.min():.3g}, {x.max():.3g}]"
  return desc


def _report_images(title, ds, pairs) -> None:
  print(f"{title} ({ds.source}):")
  for split in pairs:
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    print(f"  {split:5s} {_arr('x', x)}; {_arr('y', y)}; label counts {_counts(y, ds.num_classes)}")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  data_dir = common_flags.DATA_DIR.value
  try:
    resolved = data.resolve_data_dir(data_dir)
    print(f"data directory: {resolved if resolved else f'download cache {data.cache_dir()}'}")
    if "mnist" in _DATASETS.value:
      _report_images("MNIST", data.load_mnist(data_dir), ("train", "test"))
    if "cifar10" in _DATASETS.value:
      c = data.load_cifar10(data_dir, seed=common_flags.SEED.value)
      _report_images(
        f"CIFAR-10 (stratified split, seed {common_flags.SEED.value})", c, ("train", "val", "test")
      )
      overlap = np.intersect1d(c.train_idx, c.val_idx).size
      print(f"  split: {len(c.train_idx)} train + {len(c.val_idx)} val indices, overlap {overlap}")
    if "nusax" in _DATASETS.value:
      for lang in _NUSAX_LANGS.value:
        n = data.load_nusax(lang, data_dir)
        print(f"NusaX-Senti {lang} ({n.source}), labels {', '.join(data.NUSAX_LABELS)}:")
        for split in ("train", "valid", "test"):
          texts, labels = n.split(split)
          print(
            f"  {split:5s} {len(texts)} texts; {_arr('y', labels)}; "
            f"label counts {_counts(labels, n.num_classes)}"
          )
  except data.DataError as e:
    sys.exit(f"error: {e}")
  print("data loaded OK")


def run() -> None:
  """Console entry point (``jaxnets-smoke``)."""
  app.run(main)


if __name__ == "__main__":
  run()
