"""The weights on flash, and how they are read.

- ``platform_io`` the one module that knows the OS (O_DIRECT, fadvise, mincore, pread), with fallbacks
- ``format``      the weight file: neuron-major aligned bundles behind a checksummed header
- ``reader``      reads past the page cache, without the GIL
- ``aio``         many reads in flight from one thread (Linux kernel AIO)
- ``unit_reads``  a layer's misses in flight at once, landed cluster by cluster
"""
