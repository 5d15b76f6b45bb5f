"""The engine server of an LLM step: only an allow-list of the environment reaches it, and it needs the run's key.

Issue 25's rows: CACHE (or MODEL, PORT, HOST) set in the user's environment made llama.cpp's
server exit with its usage text (llama_cpp.server reads its settings from variables of those
names); the server on a shared node answered any user of the node. A stand-in engine (a small
HTTP server that reads its settings and its key the way llama_cpp.server and vLLM do) runs the
real :class:`EngineServer` code here; tests/llm/test_real_llm.py checks the real engines.
"""

from __future__ import annotations

import json
import logging
import stat
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mcbio.llm.config import LLMConfig
from mcbio.llm.server import API_KEY_ENV, EngineServer, engine_command, engine_env, request_headers

ENGINES = ("vllm", "llamacpp")
USER_ENV = {"CACHE": "/scratch/me/cache", "MODEL": "/scratch/me/model.bin", "PORT": "tcp://10.0.0.1:80",
            "HOST": "login1", "model": "lowercase too", "HF_MODEL_REPO_ID": "someone/else",
            "PYTHONPATH": "/work/main", "VIRTUAL_ENV": "/work/main/.venv", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "API_KEY": "the user's own", "VLLM_API_KEY": "the user's own"}
KEPT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home/me", "LANG": "fr_FR.UTF-8", "LC_ALL": "fr_FR.UTF-8",
            "TMPDIR": "/tmp/me", "CUDA_VISIBLE_DEVICES": "0,1", "VLLM_LOGGING_LEVEL": "DEBUG",
            "HF_HOME": "/scratch/me/hf", "LD_LIBRARY_PATH": "/opt/cuda/lib64", "OMP_PROC_BIND": "close"}

# The stand-in: llama_cpp.server's settings come from the command line, else from variables of the
# same names in any case (pydantic-settings); a value it cannot parse ends it with its usage text.
FAKE_ENGINE = r'''
import http.server, json, os, sys

args = sys.argv[1:]
module = args[args.index("-m") + 1]
port = int(args[args.index("--port") + 1])
key_var = "VLLM_API_KEY" if module.startswith("vllm") else "API_KEY"
if module == "llama_cpp.server":
    settings = {name.lower(): value for name, value in os.environ.items()}
    for name, parse in {"cache": {"true": 1, "false": 0}.__getitem__, "port": int, "host": str, "model": str}.items():
        if name in settings and "--" + name not in args:
            try:
                parse(settings[name])
            except (KeyError, ValueError):
                sys.exit(f"usage: __main__.py [-h] [--model MODEL] ... ({name}={settings[name]!r} is not valid)")
with open(SEEN, "w") as out:
    json.dump({"env": sorted(os.environ), "key": os.environ.get(key_var)}, out)


class Handler(http.server.BaseHTTPRequestHandler):
    def _authorized(self):
        if self.headers.get("Authorization") == "Bearer " + os.environ[key_var]:
            return True
        self._send(401, {"error": "Unauthorized"})
        return False

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self._authorized():
            self._send(200, {"object": "list", "data": [{"id": "mcbio-llm"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self._authorized():
            answer = body["messages"][0]["content"][::-1]
            self._send(200, {"choices": [{"message": {"content": answer}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def llm_config(backend: str, model: Path) -> LLMConfig:
    return LLMConfig(backend=backend, model=str(model))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"GGUF")
    return folder


@pytest.fixture
def fake_python(tmp_path) -> tuple[Path, Path]:
    """An executable that runs :data:`FAKE_ENGINE` whatever ``-m`` names, and the file where it says what it saw."""
    seen = tmp_path / "seen.json"
    script = tmp_path / "fake_engine.py"
    script.write_text(f"SEEN = {str(seen)!r}\n" + FAKE_ENGINE, encoding="utf-8")
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n', encoding="utf-8")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python, seen


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("backend", ENGINES)
def test_the_engine_env_is_an_allow_list(backend, model_dir):
    env = engine_env(llm_config(backend, model_dir), "k3y", environ={**USER_ENV, **KEPT_ENV})

    assert not {"CACHE", "MODEL", "PORT", "HOST", "model", "HF_MODEL_REPO_ID", "PYTHONPATH", "VIRTUAL_ENV",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS"} & set(env)
    assert {k: env[k] for k in KEPT_ENV} == KEPT_ENV
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    # The run's key, under the name this engine reads, replaces whatever the user had there.
    assert env[API_KEY_ENV[backend]] == "k3y"


@pytest.mark.parametrize("backend", ENGINES)
def test_the_key_goes_to_the_engine_s_environment_not_its_command_line(backend, model_dir):
    """The command line is in the log and in every user's ``ps``; the environment is this user's only."""
    cmd = engine_command(llm_config(backend, model_dir), Path("/env/bin/python"), model_dir, 8000)
    assert not any("api" in arg.lower() and "key" in arg.lower() for arg in cmd)
    assert API_KEY_ENV == {"vllm": "VLLM_API_KEY", "llamacpp": "API_KEY"}  # vllm envs.py; llama_cpp ServerSettings


def test_every_request_carries_the_key():
    assert request_headers("k3y") == {"Content-Type": "application/json", "Authorization": "Bearer k3y"}


# --------------------------------------------------------------------------- the EngineServer, on a stand-in


@pytest.mark.parametrize("backend", ENGINES)
def test_the_engine_starts_with_cache_model_port_host_set_and_serves_only_the_key(backend, model_dir, fake_python,
                                                                                   tmp_path, monkeypatch, caplog):
    python, seen = fake_python
    for name, value in USER_ENV.items():
        monkeypatch.setenv(name, value)
    log_path = tmp_path / "engine.log"

    with caplog.at_level(logging.DEBUG, logger="mcbio.llm"):
        with EngineServer(llm_config(backend, model_dir), python, model_dir, log_path) as server:
            answer = server.chat("Bonjour")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.url + "/v1/models", timeout=10)
            key = json.loads(seen.read_text())["key"]

    assert answer.text == "ruojnoB"  # ready and answered: it sent the key both times
    assert refused.value.code == 401  # a request without it, as from another user of the node
    got = json.loads(seen.read_text())["env"]
    assert not {"CACHE", "MODEL", "PORT", "HOST", "model"} & set(got) and "PATH" in got
    assert key and len(key) >= 32 and key not in USER_ENV.values()
    assert key not in log_path.read_text(encoding="utf-8") and key not in caplog.text
    assert key not in " ".join(server.command)


def test_each_engine_server_has_its_own_key(model_dir, fake_python, tmp_path):
    python, seen = fake_python
    keys = []
    for _ in range(2):
        with EngineServer(llm_config("llamacpp", model_dir), python, model_dir, tmp_path / "engine.log"):
            keys.append(json.loads(seen.read_text())["key"])
    assert keys[0] != keys[1]


def test_the_old_whole_environment_stops_the_stand_in_with_its_usage(model_dir, fake_python, tmp_path,
                                                                      monkeypatch):
    """The stand-in is faithful to the fault: handed the whole environment, it exits with its usage text."""
    import mcbio.llm.server as server_module

    python, _ = fake_python
    monkeypatch.setenv("CACHE", "/scratch/me/cache")
    monkeypatch.setattr(server_module, "engine_env",
                        lambda cfg, api_key: {**server_module.os.environ, API_KEY_ENV[cfg.backend]: api_key})
    with pytest.raises(RuntimeError, match="exited with code 1") as err:
        EngineServer(llm_config("llamacpp", model_dir), python, model_dir, tmp_path / "engine.log")
    assert "usage:" in str(err.value)
