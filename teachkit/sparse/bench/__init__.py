"""Benchmarks; each writes JSON and compares ratios measured in the same run.

- ``suite``    ``python -m teachkit.sparse.bench``: kernels against the dense FFN and memory bandwidth,
               then the engine section
- ``workload`` the engine benchmark's workload and how a token is timed
- ``engine``   ``python -m teachkit.sparse.bench.engine``: the engine against every baseline
- ``report``   what the engine benchmark's speeds are held against: physical bounds, goals and their
               ratios, ceilings, the machine's record, the median of repeated runs
- ``load``     ``python -m teachkit.sparse.bench.load``: the engine quiet and under CPU load
"""
