"""Scaling the same TRL script out with ``accelerate launch``: configs for CPU, several GPUs and DeepSpeed.

    python -m teachkit.bridge.launch cpu_2proc /tmp/cfg      # writes /tmp/cfg/cpu_2proc.yaml
    accelerate launch --config_file /tmp/cfg/cpu_2proc.yaml -m teachkit.bridge.trl_script --out /tmp/run

What each config changes (the training script does not change at all):

- ``cpu_2proc``: two processes on this machine. accelerate starts them with torchrun (the
  ``MULTI_GPU`` launcher is the one that starts several local processes); each finds no GPU
  (the script also sets ``use_cpu``), so it runs as ``MULTI_CPU`` and DDP all-reduces
  gradients over torch.distributed's **gloo** backend. Each process generates and scores its
  share of the batch; the global batch is ``per_device_train_batch_size × num_processes``.
- ``multi_gpu``: one process per GPU, **NCCL** instead of gloo, bf16 autocast. Same DDP: every GPU
  holds a full copy of the model, gradients are averaged after each backward.
- ``deepspeed_zero2``: DeepSpeed ZeRO stage 2 shards optimizer state and gradients across GPUs
  (each holds 1/N of Adam's two moments), parameters stay replicated.
- ``deepspeed_zero3``: stage 3 also shards the parameters; each layer is gathered just in time
  for its forward/backward. ``zero3_init_flag`` builds the model already sharded;
  ``zero3_save_16bit_model`` gathers a whole checkpoint on save. Needs ``pip install deepspeed``.

The ZeRO paper: Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models", arXiv:1910.02054v3.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["CONFIGS", "write_config", "launch_command"]

_COMMON = """compute_environment: LOCAL_MACHINE
machine_rank: 0
num_machines: 1
rdzv_backend: static
same_network: true
main_training_function: main
"""

CONFIGS = {
    "cpu_2proc": _COMMON + """distributed_type: MULTI_GPU   # the launcher that starts local processes (torchrun)
num_processes: 2              # two CPU processes; no GPU here, so each runs MULTI_CPU over gloo
gpu_ids: all
mixed_precision: 'no'
""",
    "multi_gpu": _COMMON + """distributed_type: MULTI_GPU
num_processes: 8              # one per GPU
gpu_ids: all
mixed_precision: bf16
""",
    "deepspeed_zero2": _COMMON + """distributed_type: DEEPSPEED
num_processes: 8
mixed_precision: bf16
deepspeed_config:
  zero_stage: 2               # shard optimizer state and gradients
  offload_optimizer_device: none
  offload_param_device: none
  gradient_accumulation_steps: 1
  zero3_init_flag: false
""",
    "deepspeed_zero3": _COMMON + """distributed_type: DEEPSPEED
num_processes: 8
mixed_precision: bf16
deepspeed_config:
  zero_stage: 3               # also shard the parameters
  offload_optimizer_device: none
  offload_param_device: none
  gradient_accumulation_steps: 1
  zero3_init_flag: true
  zero3_save_16bit_model: true
""",
}


def write_config(name: str, directory) -> Path:
    """Write ``CONFIGS[name]`` to ``directory/name.yaml`` and return the path."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}")
    path = Path(directory) / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIGS[name])
    return path


def launch_command(config_path, *script_args: str, port: int | None = None) -> list[str]:
    """``accelerate launch --config_file CONFIG -m teachkit.bridge.trl_script ARGS`` with this Python.

    ``port``: the rendezvous port of the main process (default: accelerate's, 29500).
    """
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    where = [] if port is None else ["--main_process_port", str(int(port))]
    return [accelerate, "launch", "--config_file", str(config_path), *where, "-m", "teachkit.bridge.trl_script",
            *script_args]


if __name__ == "__main__":
    print(write_config(sys.argv[1], sys.argv[2]))
