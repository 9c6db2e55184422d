"""teachkit chooses how numba's threads wait (a user's own choice wins), small kernels stay on one
thread, and the under-load benchmark records its figures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from teachkit import numba_setup
from teachkit.sparse.compute import kernels as K
from teachkit.sparse.compute.bundles import quantize_int8

ENV_KEYS = numba_setup.USER_CHOICES + ("NUMBA_NUM_THREADS",)


def _python(code: str, **env_extra) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_apply_sets_the_choice_when_the_user_chose_nothing():
    env = {"PATH": "/bin"}
    out = numba_setup.apply(env)
    assert out["applied"] == numba_setup.CHOICE and out["user_set"] == {}
    for k, v in numba_setup.CHOICE.items():
        assert env[k] == v


@pytest.mark.parametrize("var,value", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "1000"),
                                       ("NUMBA_THREADING_LAYER", "workqueue"), ("KMP_BLOCKTIME", "0")])
def test_a_users_own_setting_wins(var, value):
    env = {var: value}
    out = numba_setup.apply(env)
    assert env == {var: value}, "teachkit must not add to or change a user's own choice"
    assert out["applied"] == {} and out["user_set"] == {var: value}


def test_import_teachkit_applies_the_choice_before_torch_loads_openmp():
    code = ("import os, teachkit.check, json; from teachkit import numba_setup as s; "
            "print(json.dumps([s.status()['openmp_loaded_before'], os.environ.get('OMP_WAIT_POLICY')]))")
    loaded_before, policy = json.loads(_python(code))
    assert "torch" in _python("import sys, teachkit.check; print(list(sys.modules))")
    assert policy == numba_setup.CHOICE["OMP_WAIT_POLICY"]
    assert loaded_before is False, "an OpenMP runtime was loaded before teachkit chose its settings"


def test_import_keeps_a_users_setting_in_a_fresh_process():
    code = "import os, teachkit.sparse; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    assert _python(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE None"
    assert _python(code, GOMP_SPINCOUNT="5000") == "None 5000"
    assert _python(code) == "PASSIVE None"


def _ffn_case(n_idx, d=64, n=512, seed=0):
    rng = np.random.default_rng(seed)
    B = (rng.standard_normal((n, 3, d)) / np.sqrt(d)).astype(np.float32)
    idx = np.sort(rng.choice(n, n_idx, replace=False)).astype(np.int64)
    return B, idx, rng.standard_normal(d).astype(np.float32)


def _record_thread_choices(monkeypatch) -> list:
    """Every answer of the kernels' size rule (``uses_threads``), in call order."""
    choices, rule = [], K.uses_threads

    def recorded(n_bytes):
        choices.append(rule(n_bytes))
        return choices[-1]

    monkeypatch.setattr(K, "uses_threads", recorded)
    return choices


def test_small_kernels_run_on_the_calling_thread(monkeypatch):
    choices = _record_thread_choices(monkeypatch)
    B, idx, x = _ffn_case(16)
    assert idx.size * B.shape[1] * B.shape[2] * 4 < K.SERIAL_BELOW_BYTES
    out = K.sparse_ffn_bundled(B, idx, x, np.zeros(64, np.float32), True, parallel=True)
    ref = K.sparse_ffn_bundled(B, idx, x, np.zeros(64, np.float32), True, parallel=False)
    np.testing.assert_array_equal(out, ref)
    K.gather_dot(B[:, 0].copy(), idx, x, np.empty(idx.size, np.float32), parallel=True)
    K.down_axpy(B[:, 2].copy(), idx, np.ones(idx.size, np.float32), np.zeros(64, np.float32), parallel=True)
    q, s = quantize_int8(B)
    K.sparse_ffn_bundled_int8(q, s, idx, x, np.zeros(64, np.float32), True, parallel=True)
    assert choices == [False] * 4, "a kernel below SERIAL_BELOW_BYTES would start the thread pool"


@pytest.mark.skipif(K.numba.get_num_threads() < 2, reason="needs two numba threads")
def test_large_kernels_use_the_threads_and_agree(monkeypatch):
    choices = _record_thread_choices(monkeypatch)
    monkeypatch.setattr(K, "SERIAL_BELOW_BYTES", 0)
    B, idx, x = _ffn_case(200)
    out = K.sparse_ffn_bundled(B, idx, x, np.zeros(64, np.float32), True, parallel=True)
    ref = K.sparse_ffn_bundled(B, idx, x, np.zeros(64, np.float32), True, parallel=False)
    assert choices == [True]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_cpu_hog_is_killed_even_on_error():
    from teachkit.sparse.bench.load import cpu_hog

    with pytest.raises(RuntimeError):
        with cpu_hog() as hog:
            assert hog.proc.poll() is None, "the hog should be running inside the block"
            raise RuntimeError("boom")
    assert hog.proc.poll() is not None, "the hog outlived its block"


def test_under_load_records_its_figures(tmp_path):
    from teachkit.sparse.bench.load import LADDER, under_load

    res = under_load(shape=dict(d=128, d_ff=1024, n_layers=2), tokens=(1, 3), passes=1, log=lambda s: None,
                     workdir=tmp_path, budget_over_ffn=1.0)
    for phase in ("quiet_tok_s", "loaded_tok_s"):
        assert set(res[phase]) == set(LADDER) and all(v > 0 for v in res[phase].values())
    assert res["loaded_over_quiet"] == pytest.approx(res["loaded_tok_s"]["+pipeline"] / res["quiet_tok_s"]["+pipeline"])
    for key in ("ladder_order_quiet", "ladder_order_loaded"):
        assert sorted(res[key]) == sorted(LADDER)
    assert res["ladder_order_same"] == (res["ladder_order_quiet"] == res["ladder_order_loaded"])
    assert (res["ladder_swaps"] == []) == res["ladder_order_same"]
    for swap in res["ladder_swaps"]:
        assert (swap["quiet_b_over_a"] > 1) != (swap["loaded_b_over_a"] > 1)
    th = res["threading"]
    assert th["serial_below_bytes"] == K.SERIAL_BELOW_BYTES and "applied" in th and "environment" in th
    assert len(res["runs"]["quiet"]) == len(res["runs"]["loaded"]) == 1
    json.dumps(res)                                   # JSON-ready
