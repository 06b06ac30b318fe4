"""Flags every command-line tool shares: where data lives, where outputs go, seeds."""

from absl import flags

DATA_DIR = flags.DEFINE_string(
  "data_dir",
  None,
  "Directory holding local dataset copies (mnist.npz, cifar10.npz, "
  "nusax-senti/<lang>/{train,valid,test}.csv). Defaults to the "
  "JAXNETS_DATA_DIR environment variable; when neither is set the loaders "
  "download from the real sources into a cache (needs a network).",
)

WORKDIR = flags.DEFINE_string(
  "workdir",
  "runs",
  "Directory for run outputs (models, histories, tables, plots, checkpoints). "
  "Re-running a command with the same workdir resumes where it stopped.",
)

SEED = flags.DEFINE_integer(
  "seed", 0, "Base random seed (data split, weight init, shuffling).", lower_bound=0
)
