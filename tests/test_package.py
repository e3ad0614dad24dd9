"""gemma-chat as people install it: a wheel in a fresh venv outside the checkout, then `gemma-chat`.

The venv gets the wheel and its dependencies from pip (llama-cpp-python from pip's cache of the
wheel `make test` built), HOME is a temp dir, and nothing of the checkout is on the path: what works
here works after `pipx install .` on a new machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gemma_chat.config import CACHE_DIR_ENV, environment_without_settings
from tests.conftest import FAST_BCRYPT, ROOT
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.worker]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The built wheel installed in a new venv; the environment of a user whose HOME is empty."""
    where = tmp_path_factory.mktemp("installed")
    # Built from a copy of what the package is made of: no build/ left in the checkout, no stale
    # modules from an earlier build in the wheel, and proof that nothing else is needed.
    source = where / "source"
    shutil.copytree(ROOT / "gemma_chat", source / "gemma_chat", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, source / name)
    wheels = where / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=600, cwd=where,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("gemma_chat-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=1200, cwd=where,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    home = where / "home"
    home.mkdir()
    env = {k: v for k, v in environment_without_settings().items() if not k.startswith(("XDG_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        GEMMA_CHAT_BCRYPT_ROUNDS=str(FAST_BCRYPT), GEMMA_CHAT_MINI_N_CTX="1024", GEMMA_CHAT_PRO_N_CTX="1024",
        GEMMA_CHAT_MINI_MAX_TOKENS="16", GEMMA_CHAT_PRO_MAX_TOKENS="16",
        HF_ENDPOINT="http://127.0.0.1:9",  # the Hub is out of reach here: a dead loopback port, never the network
        HF_HOME=str(home / "hf"),
    )
    env[CACHE_DIR_ENV] = os.environ[CACHE_DIR_ENV]  # the suite's machine cache: the CPU probe once per run
    return {"env": env, "cwd": where, "venv": venv, "home": home}


def gemma_chat(installed: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gemma-chat", *args], env=installed["env"], cwd=installed["cwd"], capture_output=True, text=True, timeout=timeout,
    )


def test_the_wheel_installs_with_consistent_dependencies_and_no_checkout(installed):
    check = subprocess.run([str(installed["venv"] / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    where = subprocess.run(
        [str(installed["venv"] / "bin" / "python"), "-c", "import gemma_chat, sys; print(gemma_chat.__file__)"],
        env=installed["env"], cwd=installed["cwd"], capture_output=True, text=True,
    )
    assert str(installed["venv"]) in where.stdout and str(ROOT) not in where.stdout  # the package, not the folder
    version = gemma_chat(installed, "--version")
    assert version.returncode == 0 and version.stdout.startswith("gemma-chat 0.")


def test_an_installed_app_keeps_its_data_in_the_platform_folder(installed):
    paths = gemma_chat(installed, "paths")
    assert paths.returncode == 0, paths.stderr
    platform_data = installed["home"] / ".local" / "share" / "gemma-chat"
    assert f"{platform_data}/gemma_chat.db" in paths.stdout and f"{platform_data}/models" in paths.stdout
    assert "installed package" in paths.stdout
    models = gemma_chat(installed, "models", "--format", "json")
    assert models.returncode == 0, models.stderr
    assert {row["status"] for row in json.loads(models.stdout)} == {"bundled demo"}
    dry = gemma_chat(installed, "download", "--dry-run", "--tier", "mini")
    assert dry.returncode == 0 and "Cannot reach" in dry.stdout and "Traceback" not in dry.stderr
    assert "gemma-3-1b-it" in dry.stdout and str(platform_data / "models") in dry.stdout


def test_the_installed_command_serves_a_new_user_an_answer(installed):
    port = free_port()
    log = (installed["cwd"] / "app.log").open("w")
    app = subprocess.Popen(
        ["gemma-chat", "--no-browser", "--port", str(port)], env=installed["env"], cwd=installed["cwd"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert app.poll() is None, (installed["cwd"] / "app.log").read_text()[-3000:]
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the installed app did not answer within 240 s"
            time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=60) as browser:
            signed_up = browser.post("/auth/register", json={"username": "newcomer", "password": "long enough pw"})
            assert signed_up.status_code == 200 and signed_up.json().get("ok"), signed_up.text
            assert "gemma_session" in browser.cookies
        key = gemma_chat(installed, "keys", "create", "newcomer").stdout.split()[-1]
        assert key.startswith("gck_")
        answer = httpx.post(
            base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
            json={"model": "mini", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"].strip()
        assert answer.json()["credits_charged"] == 1
        database = installed["home"] / ".local" / "share" / "gemma-chat" / "gemma_chat.db"
        assert database.is_file()  # the platform's folder, not ./data under the working directory
        assert not (installed["cwd"] / "data").exists()
    finally:
        app.terminate()
        app.wait(timeout=60)
        log.close()
