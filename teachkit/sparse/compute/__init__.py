"""The arithmetic of a sparse FFN: numba kernels, the bundle layout, the pipeline's compute stages.

- ``kernels``   gathered dot, axpy down projection, fused bundles, int8 (``nogil`` numba)
- ``checks``    the kernels' argument checks: dtype, shape, contiguity, index range, NaN/inf
- ``bundles``   a neuron's rows side by side (``make_bundles``), int8 with one scale per row
- ``stages``    gate / up-down / fused compute of one cluster, and the landing copy
- ``reference`` pure-numpy versions of every kernel, for tests and notebooks
"""
