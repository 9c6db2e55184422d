"""Rebuild everything in ``data/``: ``make data`` runs this. Deterministic and seeded.

Each step is a module with a ``main()``; steps run in order because later ones load earlier
outputs (the RLHF runs start from the SFT policy and reward model of the toy world).
"""

from __future__ import annotations

import importlib
import sys
import time

STEPS = [
    ("toy world: SFT policy, reward model, preference pairs", "teachkit.toy.build_data"),
    ("sparse: ReLU language model on the Python stdlib", "teachkit.sparse.model.build_data"),
    ("showdown: stored runs of every RLHF method", "teachkit.rlhf.showdown_data"),
    ("bridge: TRL's GRPOTrainer and DPOTrainer against teachkit's loops", "teachkit.bridge.build_data"),
]


def main(argv: list[str]) -> int:
    only = set(argv)
    for i, (what, module_name) in enumerate(STEPS, 1):
        if only and not any(key in module_name for key in only):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                print(f"[{i}/{len(STEPS)}] {what}: not built yet, skipped", flush=True)
                continue
            raise
        print(f"[{i}/{len(STEPS)}] {what} ...", flush=True)
        start = time.perf_counter()
        module.main()
        print(f"[{i}/{len(STEPS)}] done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
