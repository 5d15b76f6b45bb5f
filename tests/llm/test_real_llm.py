"""The LLM stages on a real instruct model (SmolLM2-135M-Instruct), on vLLM's and llama.cpp's CPU engines.

Each engine starts once per module (vLLM on CPU: about 2 minutes) in the LLM environment and
serves every test: the type/quality annotation of real French passages (48 on llama.cpp; schema-valid first
try >= 95 %), passage extraction and OntoBook rephrasing, each through the pipelines' own code.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.error
import urllib.request

import pytest

from mcbio.llm import LLMConfig, build_backend, generate_structured, validation_counts

pytestmark = [pytest.mark.llm, pytest.mark.shared_data]

MODEL = "smollm2-135m-instruct"
ENGINES = ("vllm", "llamacpp")
# Requests per test and engine. vLLM's CPU engine generates ~2 tokens/s on CI's 2 cores (measured:
# 186 tokens in 107 s for 6 annotations, after a 211 s start), llama.cpp far more: vLLM gets the
# smallest load that still checks its path, llama.cpp the full one.
ANNOTATIONS = {"vllm": 8, "llamacpp": 48}
CHUNKS = {"vllm": 3, "llamacpp": 10}
WALKS = {"vllm": 3, "llamacpp": 10}


def llm_config(backend: str, llm_python, **kw) -> LLMConfig:
    return LLMConfig(backend=backend, model=MODEL, env=str(llm_python), max_new_tokens=kw.pop("max_new_tokens", 512),
                     batch_size=16, max_retries=kw.pop("max_retries", 2), **kw)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, llm_python, llm_model):
    backend = build_backend(llm_config(request.param, llm_python))
    yield backend
    backend.close()
    assert backend.server is None


def test_rebuilt_tokenizer_is_llama_cpp_s(llm_python, llm_model):
    """The byte-level tokenizer rebuilt from the GGUF encodes as llama.cpp does (accents, digits, newlines, JSON)."""
    from transformers import AutoTokenizer

    texts = ["Le patient présente une fièvre à 39,5 °C depuis 12 jours.\n\nBilan : CRP = 230 mg/l.",
             '{"edu": 7, "cont": 10, "type": "patient_case"}', "Œdème, hépatite B; 2×10⁹/L — « sic » ",
             "  espaces   multiples\tet tabulations\n"]
    code = ("import json, sys; from llama_cpp import Llama; "
            f"llm = Llama({str(llm_model / 'model.gguf')!r}, vocab_only=True, verbose=False); "
            "print(json.dumps([llm.tokenize(t.encode(), add_bos=False, special=True) for t in json.load(sys.stdin)]))")
    out = subprocess.run([str(llm_python), "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                         timeout=300, check=True)
    expected = json.loads(out.stdout)
    tok = AutoTokenizer.from_pretrained(llm_model, local_files_only=True)
    assert [tok(t, add_special_tokens=False)["input_ids"] for t in texts] == expected
    assert tok.decode(tok("à 39,5 °C\n\n")["input_ids"]) == "à 39,5 °C\n\n"
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                                              add_generation_prompt=True)


def test_annotation_of_french_passages_is_schema_valid(engine, french_passages):
    from mcbio.config.curation import CONTENT_TYPES, SCORE_KEYS
    from mcbio.data.curation.llm_tasks import ANNOTATION_SCHEMA, annotation_prompt, parse_annotation

    n = ANNOTATIONS[engine.name]
    before = dataclasses.replace(engine.usage)
    results = generate_structured(engine, [(annotation_prompt(p), parse_annotation) for p in french_passages[:n]],
                                  ANNOTATION_SCHEMA, max_retries=2, task="curation_annotate")
    counts = validation_counts(results)
    used = engine.usage.minus(before)
    print(f"\n{engine.name}: {counts}, {used.as_dict()}")
    assert counts["requests"] == n
    assert counts["valid_first_try"] >= 0.95 * n, counts
    for r in results:
        if r.ok:
            assert r.value["type"] in CONTENT_TYPES and all(1 <= r.value[k] <= 10 for k in SCORE_KEYS)
    assert used.prompts >= n and used.prompt_tokens > n * 100 and used.generated_tokens >= n * 10
    assert used.seconds > 0 and engine.usage.engine_start_s > 0


def test_the_engine_refuses_a_request_without_the_run_s_key(engine):
    """Any user of a shared node reaches 127.0.0.1: the engine serves only this run's key (issue 25)."""
    if engine.server is None:
        engine.generate(["Bonjour"])
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(engine.server.url + "/v1/models", timeout=60)
    assert err.value.code == 401


def test_llamacpp_starts_with_cache_model_port_host_in_the_environment(llm_python, llm_model, monkeypatch):
    """llama_cpp.server reads settings from variables of these names: the engine must not see the user's."""
    for name, value in {"CACHE": "/scratch/cache", "MODEL": "/nowhere/model.gguf", "PORT": "tcp://10.0.0.1:80",
                        "HOST": "login1"}.items():
        monkeypatch.setenv(name, value)
    backend = build_backend(llm_config("llamacpp", llm_python, max_new_tokens=8))
    try:
        [answer] = backend.generate(["Bonjour"])
    finally:
        backend.close()
    assert isinstance(answer, str) and backend.usage.generated_tokens > 0


def test_extraction_runs_through_the_curation_step(engine, e3c_documents):
    """E3C case reports (10 on llama.cpp) through LLMExtraction: JSON passages, each with its fidelity to its chunk."""
    from datatrove.data import Document

    from mcbio.data.curation.steps import LLMExtraction

    cfg = dataclasses.replace(engine.cfg, max_retries=0)
    step = LLMExtraction(cfg, max_words=200)
    step._backend = engine  # the module's running engine
    n = CHUNKS[engine.name]
    docs = [Document(text=" ".join(d.text.split()[:180]), id=d.id, metadata={"article_id": d.id})
            for d in e3c_documents[:n]]
    out = list(step._run(docs, rank=0))
    print(f"\n{engine.name}: {len(out)} passages from {n} chunks; valid first try "
          f"{step.stats['llm/valid_first_try'].total:.0f}/{n}")
    assert step.stats["llm/requests"].total == n
    assert step.stats["llm/generated_tokens"].total > 0
    assert out, "no chunk gave a passage"
    for passage in out:
        assert passage.text and 0.0 <= passage.metadata["fidelity"] <= 1.0
        assert passage.metadata["source_chunk"] in {d.id for d in docs}


def test_rephrasing_runs_through_ontobook(engine, shared_data):
    """Walks on the real CIM-10 (10 on llama.cpp) rephrased and verified by OntoBook's own code."""
    from mcbio.config.ontobook import OntobookSettings, WalkConfig
    from mcbio.data.ontobook.build import rephrase_walks, shard_walks
    from mcbio.data.ontobook.rephrase import FAILURE_REASONS
    from mcbio.data.ontobook.sources import load_ontology

    settings = OntobookSettings()
    n = WALKS[engine.name]
    onto = dataclasses.replace(settings.ontologies["cim10"], walks=n, shards=1)
    graph, _ = load_ontology("cim10", onto, str(shared_data))
    items, _ = shard_walks(graph, onto, WalkConfig(min_chars=200, max_steps=10), 0, progress=False)
    assert len(items) == n
    rephrase = dataclasses.replace(settings.rephrase, llm=dataclasses.replace(engine.cfg, max_retries=0))
    result = rephrase_walks(items, graph, engine, rephrase, progress=False)
    print(f"\n{engine.name}: {len(result.documents)}/{n} kept, failures {dict(result.failures)}, "
          f"{result.llm.get('llm/generated_tokens')} tokens generated")
    assert len(result.documents) + sum(result.failures.values()) == n
    assert set(result.failures) <= set(FAILURE_REASONS)
    assert result.llm["llm/requests"] == n and result.llm["llm/generated_tokens"] > 0
    for doc in result.documents:
        assert all(code in doc["text"] for code in doc["codes"])


def test_transformers_backend_on_the_same_model(llm_model, french_passages):
    """The in-process backend reads the same folder: it answers and counts its tokens (no schema enforcement)."""
    from mcbio.data.curation.llm_tasks import ANNOTATION_SCHEMA, annotation_prompt, parse_annotation

    backend = build_backend(LLMConfig(backend="transformers", model=MODEL, max_new_tokens=64, batch_size=4))
    results = generate_structured(backend, [(annotation_prompt(p), parse_annotation) for p in french_passages[:4]],
                                  ANNOTATION_SCHEMA, max_retries=0, task="curation_annotate")
    assert len(results) == 4 and all(r.attempts == 1 for r in results)
    assert backend.usage.prompts == 4 and backend.usage.generated_tokens > 0 and backend.usage.prompt_tokens > 400


def test_a_broken_engine_shows_its_log(tmp_path, llm_python):
    """An engine that cannot start fails the job with its exit code and the end of its log."""
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    backend = build_backend(LLMConfig(backend="llamacpp", model=str(tmp_path), env=str(llm_python)),
                            log_dir=tmp_path / "logs")
    with pytest.raises(RuntimeError, match="exited with code") as err:
        backend.generate(["Bonjour"])
    assert "--- end of" in str(err.value) and str(tmp_path / "logs") in str(err.value)
    assert list((tmp_path / "logs").glob("llamacpp-engine-*.log"))
