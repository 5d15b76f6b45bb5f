"""An LLM engine of the LLM environment, run as an OpenAI-compatible server for one job.

The job that needs the engine starts it (``vllm.entrypoints.openai.api_server``, or
``llama_cpp.server``) from the LLM environment's python on a free port of 127.0.0.1, waits
until it answers, sends its chat requests concurrently (the engine batches them), and stops it.
The engine sees only an allow-list of this process's environment (:func:`engine_env`) and
serves only the requests that carry a random key of this run (Authorization: Bearer), which
reaches it through its environment, never its command line or a log.
The engine's output goes to a log file whose end is shown when it fails to start. This is
how datatrove's inference runner drives vLLM too; here the engine sits in the other
environment, so this one never imports vLLM.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from mcbio.llm.config import LLMConfig

log = logging.getLogger(__name__)

SERVED_NAME = "mcbio-llm"


@dataclass
class ChatAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Optional[str] = None
    # Why the engine refused the request (HTTP 400: a prompt longer than the context...); text is "".
    refused: Optional[str] = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_cpus() -> int:
    """The cores this job may use: Slurm's allocation, else this process's CPU affinity."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return len(os.sched_getaffinity(0))


def engine_command(cfg: LLMConfig, python: Path, model: Path, port: int) -> List[str]:
    """The server command line of ``cfg.backend``'s engine."""
    srv = cfg.server
    if cfg.backend == "vllm":
        cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(srv.max_model_len), "--tensor-parallel-size", str(cfg.tensor_parallel_size),
               "--max-num-seqs", str(max(1, cfg.batch_size)), "--seed", "0",
               # Compact JSON under a schema: a small model otherwise fills its answers with
               # newlines and indentation until max_tokens (an engine-wide setting in vLLM, which
               # xgrammar, the grammar backend named here, honours).
               "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
    elif cfg.backend == "llamacpp":
        from mcbio.llm.models import gguf_file

        threads = srv.threads or job_cpus()
        cmd = [str(python), "-m", "llama_cpp.server", "--model", str(gguf_file(model)), "--model_alias", SERVED_NAME,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(srv.max_model_len),
               "--n_threads", str(threads), "--n_threads_batch", str(threads), "--seed", "0"]
    else:
        raise ValueError(f"llm.backend '{cfg.backend}' has no server engine")
    return cmd + list(srv.extra_args)


# What the engine may see of this job's environment; nothing else passes. llama_cpp.server reads its
# settings (MODEL, PORT, HOST, CACHE, API_KEY, N_CTX..., any case) from environment variables of the
# same names through pydantic-settings, so a variable a user set for something else (a CACHE folder)
# would reach it as a setting and make it exit with its usage text.
ENGINE_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP", "TERM",
    # Libraries and compilers (torch.compile / Triton build kernels at start; CPU vLLM preloads its allocator).
    "LD_LIBRARY_PATH", "LD_PRELOAD", "LIBRARY_PATH", "CPATH", "CC", "CXX",
    "PYTHONUNBUFFERED", "PYTHONIOENCODING",
    # Hugging Face caches and offline flags (by name: HF_MODEL_REPO_ID... are llama_cpp.server settings).
    "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "DO_NOT_TRACK",
    "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
})
# Prefixes no llama_cpp.server setting starts with.
ENGINE_ENV_PREFIXES = ("LC_", "XDG_", "VLLM_", "CUDA_", "NCCL_", "TORCH", "PYTORCH_", "TRITON_", "OMP_", "KMP_",
                       "GGML_", "LLAMA_CPP_")
# The engines size and bind their own thread pools (vLLM pins its worker to the job's cores,
# llama.cpp takes --n_threads): a thread count inherited from the job (a local element's
# OMP_NUM_THREADS) would put several OpenMP threads on one pinned core, spinning against
# each other (measured: vLLM on CPU 15x slower, 6 instead of 90 generated tokens/s).
ENGINE_ENV_DROPPED = frozenset({"OMP_NUM_THREADS", "MKL_NUM_THREADS"})
# Where each engine reads the run's API key: the environment, which only this user can read
# (/proc/<pid>/environ), not the command line, which every user of the node sees in ps.
API_KEY_ENV = {"vllm": "VLLM_API_KEY", "llamacpp": "API_KEY"}


def new_api_key() -> str:
    """A random key for one engine server: requests without it are refused (401)."""
    return secrets.token_urlsafe(32)


def _passed_to_engine(name: str) -> bool:
    return name not in ENGINE_ENV_DROPPED and (name in ENGINE_ENV_NAMES or name.startswith(ENGINE_ENV_PREFIXES))


def engine_env(cfg: LLMConfig, api_key: str, environ: Optional[Mapping[str, str]] = None) -> dict:
    """The engine's environment: the allowed part of ``environ`` (this process's), its own settings, the key.

    PYTHONPATH and VIRTUAL_ENV never pass: the engine's python must not see this environment's packages.
    """
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items() if _passed_to_engine(name)}
    if cfg.backend == "vllm":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.server.cpu_kv_cache_gb))
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env[API_KEY_ENV[cfg.backend]] = api_key
    return env


def request_headers(api_key: str) -> dict:
    """The headers of every request to the engine: JSON, and the run's key."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}


def _die_with_parent() -> None:
    """In the engine's process, before it runs: SIGTERM when the job that started it dies (Linux)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: close() and the job's own end still stop the engine


def _error_message(body: str) -> str:
    """The message of an OpenAI-style error body (vLLM and llama-cpp-python both send one)."""
    try:
        err = json.loads(body)
        err = err.get("error", err) if isinstance(err, dict) else err
        return str(err.get("message", err) if isinstance(err, dict) else err)[:500]
    except json.JSONDecodeError:
        return body[:500]


class EngineServer:
    """Start, query and stop one engine server. Use as a context manager, or call :meth:`close`."""

    def __init__(self, cfg: LLMConfig, python: Path, model: Path, log_path: Optional[Path] = None) -> None:
        self.cfg = cfg
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"mcbio-{cfg.backend}-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.command = engine_command(cfg, python, model, self.port)
        # On a shared node any user can reach 127.0.0.1: only requests with this run's key are served.
        # It lives in this object and the engine's environment only, never in a log or a record.
        self._api_key = new_api_key()
        self.start_s: Optional[float] = None
        self._log = open(self.log_path, "ab")
        started = time.time()
        log.info("starting the %s engine: %s (log: %s)", cfg.backend, " ".join(self.command), self.log_path)
        # Its own session, so that stopping it also stops the engine's worker processes; and a
        # signal when this process dies, so that a killed job (scancel, a timeout) leaves no engine.
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=engine_env(cfg, self._api_key), start_new_session=True,
                                     preexec_fn=_die_with_parent)
        atexit.register(self.close)
        try:
            self._wait_ready(cfg.server.startup_timeout_s)
        except BaseException:
            self.close()
            raise
        self.start_s = time.time() - started
        log.info("%s engine ready in %.0f s on %s", cfg.backend, self.start_s, self.url)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"the {self.cfg.backend} engine exited with code {code} before it was ready: "
                                   f"{' '.join(self.command)}\n--- end of {self.log_path} ---\n{self.log_tail()}")
            try:
                ready = urllib.request.Request(self.url + "/v1/models", headers=request_headers(self._api_key))
                with urllib.request.urlopen(ready, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as err:
                if err.code == 401:
                    raise RuntimeError(f"the {self.cfg.backend} engine on {self.url} refused this run's API key: "
                                       f"another server holds the port, or the engine did not read "
                                       f"{API_KEY_ENV[self.cfg.backend]}") from None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"the {self.cfg.backend} engine did not answer within {timeout_s:.0f} s "
                           f"(llm.server.startup_timeout_s)\n--- end of {self.log_path} ---\n{self.log_tail()}")

    def close(self) -> None:
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> "EngineServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def _request_body(self, prompt: str, json_schema: Optional[dict]) -> dict:
        body: dict = {"model": SERVED_NAME, "messages": [{"role": "user", "content": prompt}],
                      "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_new_tokens, "seed": 0}
        if json_schema is not None:
            if self.cfg.backend == "vllm":
                body["structured_outputs"] = {"json": json_schema}
            else:
                # llama-cpp-python turns the schema into a grammar (whitespace bounded there).
                body["response_format"] = {"type": "json_object", "schema": json_schema}
        return body

    def chat(self, prompt: str, json_schema: Optional[dict] = None) -> ChatAnswer:
        data = json.dumps(self._request_body(prompt, json_schema)).encode("utf-8")
        req = urllib.request.Request(self.url + "/v1/chat/completions", data=data,
                                     headers=request_headers(self._api_key))
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.server.request_timeout_s) as resp:
                out = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", errors="replace")[:2000]
            if err.code == 400:  # this prompt, not the engine: the others go on
                return ChatAnswer("", 0, 0, refused=_error_message(detail))
            raise RuntimeError(f"the {self.cfg.backend} engine failed a request (HTTP {err.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            state = "exited" if self.proc.poll() is not None else "is running but did not answer"
            raise RuntimeError(f"the {self.cfg.backend} engine {state} ({err})\n--- end of {self.log_path} ---\n"
                               f"{self.log_tail()}") from None
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return ChatAnswer(choice["message"].get("content") or "", int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), choice.get("finish_reason"))

    def chat_many(self, prompts: Sequence[str], json_schema: Optional[dict] = None,
                  concurrency: int = 16) -> List[ChatAnswer]:
        """One answer per prompt, in order; up to ``concurrency`` requests in flight."""
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(prompts) or 1))) as pool:
            return list(pool.map(lambda p: self.chat(p, json_schema), prompts))
