"""teachkit: the RLHF family from scratch, and a PowerInfer-2-style sparse inference engine.

Subpackages
-----------
- ``teachkit.toy``    the toy world: a tiny GPT, toy tasks with gold rewards, SFT, reward model
- ``teachkit.rlhf``   losses, advantages and KL estimators (PPO, ReMax, GRPO, DPO, DPOP, TDPO, ORPO)
- ``teachkit.sparse`` activation sparsity, predictors, numba kernels, flash storage, cache, pipeline
- ``teachkit.check``  exercise checkers used at the end of every notebook
- ``teachkit.viz``    the one plotting style of the course
"""

from pathlib import Path

from . import numba_setup  # noqa: F401  (first: OpenMP reads its settings once, before torch loads it)

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_DIR = REPO_DIR / "data"
