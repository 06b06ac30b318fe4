"""Flags of the study runner (``python -m train``); shared ones are in ``flags.common``.

This module imports nothing of the project: the allowed values of ``--family``,
``--study``, ``--monitor`` and ``--lang`` live in ``train`` (``train.studies``,
``train.data``), whose entry point checks them when the command line is parsed,
so a bad flag still fails with a clear message and a non-zero exit before any
data is read or any model is built.
"""

from absl import flags

FAMILY = flags.DEFINE_string(
  "family",
  None,
  "Model family: cnn (CIFAR-10), rnn / lstm (NusaX-Senti SimpleRNN / LSTM), mlp (MNIST), "
  "or all (every study of every family; --study must be all).",
)

STUDY = flags.DEFINE_string(
  "study",
  "all",
  "Study to run, or 'all' for every study of the family. cnn: conv_layers, filters, "
  "kernels, pooling, base; rnn and lstm: layers, cells, direction; mlp: recipe.",
)
SEEDS = flags.DEFINE_integer(
  "seeds", 3, "Seeds per variant: --seed, --seed+1, ... (tables report mean ± std).", lower_bound=1
)

EPOCHS = flags.DEFINE_integer(
  "epochs",
  None,
  "Maximum epochs (default: the family's recipe: cnn 15, rnn/lstm 30, "
  "mlp 50). EarlyStopping (see --monitor) restores the best epoch's weights.",
  lower_bound=1,
)

PATIENCE = flags.DEFINE_integer(
  "patience",
  None,
  "EarlyStopping patience in epochs (default: cnn 3, rnn/lstm/mlp 5).",
  lower_bound=0,
)

BATCH_SIZE = flags.DEFINE_integer(
  "batch_size", None, "Training batch size (default: cnn 64, rnn/lstm 32, mlp 128).", lower_bound=1
)

MONITOR = flags.DEFINE_string(
  "monitor",
  None,
  "Validation metric EarlyStopping watches (val_loss or val_accuracy); its best epoch's weights are restored "
  "(default: the family's recipe: val_accuracy for rnn/lstm, val_loss for cnn/mlp).",
)

LANG = flags.DEFINE_string(
  "lang",
  "indonesian",
  "NusaX-Senti language for the rnn/lstm families (one of the 12: indonesian, acehnese, "
  "balinese, banjarese, buginese, english, javanese, madurese, minangkabau, ngaju, "
  "sundanese, toba_batak).",
)

MAX_TRAIN_ROWS = flags.DEFINE_integer(
  "max_train_rows",
  None,
  "Use at most this many training rows and at most this many "
  "validation rows (a fixed random subset): for smoke runs and tests.",
  lower_bound=1,
)

MAX_TEST_ROWS = flags.DEFINE_integer(
  "max_test_rows", None, "Use at most this many test rows (a fixed random subset).", lower_bound=1
)

EXPORT_DIR = flags.DEFINE_string(
  "export_dir",
  None,
  "Also copy each study's results.md, results.csv, runs.csv and "
  "loss_curves.png to <export_dir>/<family>/<study>/ (e.g. results).",
)

REPORT_ONLY = flags.DEFINE_bool(
  "report_only",
  False,
  "Train nothing: rewrite each study's tables and figures (and the --export_dir copies) from "
  "the runs already finished in --workdir; runs not finished are left out and the report "
  "is marked partial.",
)

TRAINER = flags.DEFINE_enum(
  "trainer",
  "keras",
  ["keras", "jax"],
  "Who trains the models: keras (Keras fit, the reference) or jax (the jaxnets layers "
  "with optax, train/jax_trainer.py; outputs go to <workdir>/jax and <export_dir>/jax, "
  "and each trained model is written back to Keras with port.to_keras and checked).",
)

TENSORBOARD = flags.DEFINE_bool(
  "tensorboard",
  False,
  "Also write each run's per-epoch loss, accuracy, val_loss, val_accuracy and learning "
  "rate to <run_dir>/tb/ while it trains, in TensorBoard's format (Keras's TensorBoard "
  "callback, or tensorboardX for --trainer=jax). Watch with: tensorboard --logdir runs",
)

flags.mark_flag_as_required("family")

# ------------------------------------------------ where the runs train (train/executors/)

EXECUTOR = flags.DEFINE_enum(
  "executor",
  "local",
  ["local", "ray"],
  "Where the runs of the sweep train. local: on this machine, one at a time in this "
  "process, or --workers at once in worker processes. ray: one Ray task per run, on a "
  "local Ray instance or the cluster at --ray_address (needs: pip install -e '.[ray]'). "
  "The driver writes every run directory either way; workers need no shared file system.",
)

WORKERS = flags.DEFINE_integer(
  "workers",
  1,
  "--executor=local: runs trained at once, each in its own worker process "
  "(1: in this process, today's behaviour).",
  lower_bound=1,
)

RAY_ADDRESS = flags.DEFINE_string(
  "ray_address",
  None,
  "--executor=ray: address of a running Ray cluster's head node, host:port (from "
  "`ray start --head`), or ray://host:10001 for Ray Client; unset: start a local Ray "
  "instance for this command and shut it down afterwards.",
)

CPUS_PER_RUN = flags.DEFINE_float(
  "cpus_per_run",
  1.0,
  "--executor=ray: CPUs each run reserves (Ray starts no more runs than the nodes' CPUs allow).",
  lower_bound=0.0,
)

GPUS_PER_RUN = flags.DEFINE_float(
  "gpus_per_run",
  0.0,
  "--executor=ray: GPUs each run reserves; 1 trains one run per GPU (Ray sets "
  "CUDA_VISIBLE_DEVICES for it), fractions share a GPU.",
  lower_bound=0.0,
)
