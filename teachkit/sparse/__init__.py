"""A PowerInfer-2-style sparse inference engine, accelerated with numba.

Subpackages, in dependency order: each imports only the ones above it (import-linter holds this;
``python -m teachkit.devtools.layers`` prints the map and checks it).

- ``compute``   numba kernels for the sparse FFN, the bundle layout and its int8 quantisation, the
                pipeline's compute stages, and pure-numpy references for every kernel
- ``model``     what is decoded (a ReLU LM trained on the Python stdlib, SYNTHETIC stacks at real
                sizes) and what is known about it (activation statistics, predictors, neuron clusters)
- ``flash``     the weights on flash: the file format, the OS layer (``platform_io``), the reader,
                kernel AIO, and a layer's misses read unit by unit
- ``runtime``   decoding: the trace, the segmented neuron cache, the cluster pipeline, the engine,
                and the GPT in numpy that runs on it
- ``planner``   the offline planner: machine and I/O profiles, the cost model that picks a plan,
                and the trade-off models behind the widgets
- ``baselines`` what the engine is measured against: dense in RAM, mmap, tuned streaming, sparse
                without a cache, LLM in a flash
- ``bench``     the benchmarks (``python -m teachkit.sparse.bench``): kernels, the engine against
                the baselines, and under CPU load

``model`` and ``flash`` are independent of each other, as are ``planner`` and ``baselines``.
"""

from .. import numba_setup  # noqa: F401  (how numba's threads wait: chosen before any pool starts)
