"""Decoding: the cache, the pipeline and the engine that put the lower layers together.

- ``trace``     ``TraceEvent`` and ``Trace``: when each stage of each cluster ran, on which lane
- ``lru``       ``LRUTable``: one LRU region as integer arrays, and its numba lookup ``lru_lookup``
- ``lookup``    ``look_up_layer``: a layer's active neurons routed to hot clusters and cold neurons,
                both regions looked up in one numba call (``LayerRouting`` in, ``LayerPlan`` out)
- ``cache``     the segmented neuron cache: fixed, hot (cluster LRU) and cold (neuron LRU) regions
- ``pipeline``  reads in flight while the compute thread works; serial, matrix- and cluster-level
- ``engine``    ``SparseFFN``: dense prefill, sparse decode from flash; ``engine_memory``
- ``numpy_gpt`` the trained toy GPT in numpy, with a dense or sparse FFN backend
"""
