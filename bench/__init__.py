"""bench: how fast the port runs, against every other way to run the same model.

    python -m bench                              # the full inference benchmark
    python -m bench --preset=speedcheck          # quick: CNN and MLP, Keras vs the port
    python -m bench --preset=speedcheck_text     # quick: the LSTM and SimpleRNN text models
    python -m bench --preset=train_speed         # training: the JAX trainer vs Keras fit

Modules: ``settings`` (what a run depends on; the presets), ``workloads`` (the
models and their inputs), ``systems`` (the ways to run a model), ``worker`` (a
system in a process of its own), ``benchmark`` (one whole run), ``measure``
(matmul peak, per-layer profile, cold start), ``report`` (targets, markdown,
chart), ``timing`` (interleaved timing), ``flops`` (FLOP counts), ``weights``
(seeded random weights), ``train_speed`` (training throughput).

This file imports nothing: a worker process imports ``bench.worker`` and, through it,
only the framework its own system runs on.
"""
