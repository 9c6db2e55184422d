"""`make lab` really serves the course: start it on a free port with a token, fetch /lab and the
welcome notebook through the contents API, then stop it."""

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


@pytest.fixture
def lab_server(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    args = f"--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"PORT={port}", f"LAB_ARGS={args}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"make lab exited early:\n{proc.stdout.read().decode(errors='replace')[-3000:]}")
            try:
                fetch(f"{base}/api/status", token)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer within 90 s")
                time.sleep(0.5)
        yield base, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_lab_serves_lab_and_the_welcome_notebook(lab_server):
    base, token = lab_server
    status, body = fetch(f"{base}/lab", token)
    assert status == 200 and b"JupyterLab" in body
    status, body = fetch(f"{base}/api/contents/00_welcome.ipynb?content=1", token)
    model = json.loads(body)
    assert status == 200 and model["type"] == "notebook"
    assert any("check" in "".join(c["source"]) for c in model["content"]["cells"])


def test_lab_refuses_a_wrong_token(lab_server):
    base, _ = lab_server
    with pytest.raises(urllib.error.HTTPError) as info:
        fetch(f"{base}/api/contents/00_welcome.ipynb", "wrong-token")
    assert info.value.code == 403
