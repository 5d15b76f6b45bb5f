"""The real LLM for the tests marked ``llm``: the LLM environment and SmolLM2-135M-Instruct, built or reused.

The first run builds the environment from ``slurm/llm/cpu.yaml`` (about 10 minutes on 2 cores:
llama.cpp compiles) and prepares the model (about 30 s); later runs reuse both. Deselect these
tests with ``-m "not llm"``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def llm_python() -> Path:
    from mcbio.llm.env import ensure_env

    return ensure_env("cpu")


@pytest.fixture(scope="session")
def llm_model(llm_python) -> Path:
    from mcbio.llm.models import prepare_model

    return prepare_model(MODEL, llm_python)


@pytest.fixture(scope="session")
def e3c_documents(shared_data) -> list:
    """The E3C journal layer's clinical case reports, read by the curation's own reader."""
    from mcbio.data.curation.samples import e3c_case_reports

    return list(e3c_case_reports(shared_data, limit=50))


@pytest.fixture(scope="session")
def french_passages(shared_data) -> list[str]:
    """48 real French clinical passages (heads of E3C case reports): the benchmark's prompts too."""
    from mcbio.data.curation.samples import e3c_passages

    return e3c_passages(shared_data, 48)
