"""The engines the sparse engine is compared with, all behind the same ``ffn(layer, x)`` call.

* :class:`DenseRAM`: every weight in RAM, three BLAS matvecs per layer (no budget: a reference).
* :class:`DenseMmap`: llama.cpp style. The file is ``mmap``-ed and the OS pages weights in on
  demand. The budget is enforced the way a memory-limited page cache would: pages of the
  least recently used layers are dropped (``madvise``/``fadvise`` DONTNEED) once more than
  ``budget`` bytes are resident. With layers visited in a cycle, LRU keeps little that is used
  again; pages the kernel reads ahead beyond the engine's reserve for them can (see its class).
* :class:`DenseStream`: the *tuned* dense streaming baseline. As many neurons of every layer
  as the budget allows are pinned in RAM; the rest are streamed in >= 4 MiB sequential reads,
  two in flight, into a ring of chunk buffers, overlapped with BLAS compute on the chunks
  before (FlexGen / LLM-in-a-flash "hybrid" style).
* :class:`NoCacheSparse`: predictor + sparse compute, but every active neuron is read from
  flash every token (ablation rungs "sparse from flash", and "+bundle" with a bundled file).

Reads: ``io_threads`` blocking-``pread`` threads (how our LLM-in-a-flash port reads, with the
paper's 32 threads: arXiv:2312.11514v3, §4.1), or with ``io_depth`` the engine's own I/O, one thread keeping ``io_depth``
reads in flight with kernel AIO (:mod:`teachkit.sparse.flash.aio`).
* :class:`LLMFlash`: LLM in a flash: predictor, row-column bundling, a *window* of the
  neurons used by the last ``window`` tokens kept in RAM, misses read then computed (no
  pipeline, no hot region). Compute uses the fused bundled kernel (notebook 11), on both cores (``parallel``) when
  that is faster on this machine, since nothing else runs during its compute.
"""

from __future__ import annotations

from .dense import DenseMmap, DenseRAM, DenseStream, dense_bundle_ffn
from .sparse import LLMFlash, NoCacheSparse

__all__ = ["DenseRAM", "DenseMmap", "DenseStream", "NoCacheSparse", "LLMFlash", "dense_bundle_ffn"]
