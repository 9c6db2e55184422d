"""The TRL script of notebook 15 under ``accelerate launch``: two CPU processes, data parallel over gloo."""

import json
import os
import socket
import subprocess

import pytest

from teachkit.bridge.launch import CONFIGS, launch_command, write_config

STEPS = 2           # teachkit steps; μ = 2, so 4 optimizer steps
DEADLINE_S = 480    # two processes importing TRL on a shared 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accelerate")
    cmd = launch_command(write_config("cpu_2proc", tmp), "--out", str(tmp / "run"), "--steps", str(STEPS),
                         port=_free_port())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_two_cpu_processes_over_gloo(ranks):
    for r, rep in enumerate(ranks):
        assert rep["rank"] == r and rep["world_size"] == 2
        assert rep["distributed_type"] == "MULTI_CPU" and rep["backend"] == "gloo"
        assert rep["global_step"] == 2 * STEPS


def test_data_parallel_each_rank_scores_half_the_batch_on_its_own_prompts(ranks):
    for rep in ranks:
        assert rep["completions_scored"] == STEPS * 128 // 2
    assert set(ranks[0]["prompts"]) != set(ranks[1]["prompts"])


def test_gradients_are_synchronised_and_training_moved_the_weights(ranks):
    a, b = ranks
    assert a["checksum_before"] == b["checksum_before"]
    assert a["checksum_after"] == b["checksum_after"]
    assert a["checksum_after"] != a["checksum_before"]


def test_every_config_parses_and_names_its_distribution():
    import yaml

    for name, text in CONFIGS.items():
        cfg = yaml.safe_load(text)
        assert cfg["distributed_type"] in ("MULTI_GPU", "DEEPSPEED"), name
        assert cfg["num_processes"] >= 2
        if cfg["distributed_type"] == "DEEPSPEED":
            assert cfg["deepspeed_config"]["zero_stage"] in (2, 3)
