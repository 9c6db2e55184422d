"""What is decoded, and what is known about its activations.

- ``lm``         a small ReLU language model trained on Python's standard library
- ``synthetic``  SYNTHETIC FFN stacks at realistic shapes, with controlled activation statistics
- ``stats``      activation sparsity per token, per neuron, per batch
- ``predictor``  per-layer activation predictors: which neurons fire for this input
- ``clusters``   hot/cold neurons, cluster sizing, the bundle order on disk
- ``build_data`` ``make data``: trains the LM and its predictors, deterministically
"""
