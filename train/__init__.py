"""Training code: dataset loaders (train.data) and command-line tools."""
