"""Validated generation: parse every answer, retry the failures, set aside what still fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, List, Optional, Sequence, Tuple, TypeVar

from mcbio.llm.backends import LLMBackend, RefusedAnswer

T = TypeVar("T")

RETRY_NOTE = (
    "\n\nYour previous answer was rejected: {error}\n"
    "Answer again with only the JSON object described above."
)


@dataclass
class StructuredResult(Generic[T]):
    value: Optional[T] = None
    # Why the last attempt failed; None when ``value`` is set.
    error: Optional[str] = None
    attempts: int = 0
    # Every raw answer, in attempt order.
    raw: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def generate_structured(
    backend: LLMBackend,
    requests: Sequence[Tuple[str, Callable[[str], T]]],
    json_schema: Optional[dict],
    max_retries: int,
    task: Optional[str] = None,
    retry_feedback: bool = True,
) -> List[StructuredResult[T]]:
    """Answer each ``(prompt, parse)`` request; retry only the failing ones up to ``max_retries`` times.

    Every answer is parsed by its own request's ``parse``, which raises ValueError (or
    TypeError, KeyError) for a malformed answer; such answers never raise here, they come
    back with ``error`` set. Results are in request order. With ``retry_feedback`` a retry
    prompt carries the rejection reason, so greedy decoding does not just repeat the same answer.
    """
    for i, request in enumerate(requests):
        if not (isinstance(request, (tuple, list)) and len(request) == 2 and isinstance(request[0], str)
                and callable(request[1])):
            raise TypeError(f"generate_structured: request {i} is not a (prompt, parse) pair: {request!r:.80}")
    results: List[StructuredResult[T]] = [StructuredResult() for _ in requests]
    pending = list(range(len(requests)))
    for _ in range(max_retries + 1):
        if not pending:
            break
        batch = []
        for i in pending:
            prompt = requests[i][0]
            if retry_feedback and results[i].error:
                prompt += RETRY_NOTE.format(error=results[i].error)
            batch.append(prompt)
        answers = backend.generate(batch, json_schema=json_schema, task=task)
        if len(answers) != len(batch):
            raise RuntimeError(f"backend '{backend.name}' returned {len(answers)} answers for {len(batch)} prompts")
        still_failing = []
        for i, answer in zip(pending, answers):
            res = results[i]
            res.attempts += 1
            res.raw.append(answer)
            if isinstance(answer, RefusedAnswer):  # the same prompt would be refused again
                res.error = f"refused by the engine: {answer.reason}"
                continue
            try:
                res.value = requests[i][1](answer)
                res.error = None
            except (ValueError, TypeError, KeyError) as err:
                res.error = f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)
                still_failing.append(i)
        pending = still_failing
    return results


def validation_counts(results: Sequence[StructuredResult]) -> dict:
    """How the answers of one ``generate_structured`` call fared: schema-valid on the first try,
    valid after retries, still invalid, and the retries spent."""
    return {
        "requests": len(results),
        "valid_first_try": sum(1 for r in results if r.ok and r.attempts == 1),
        "valid_after_retry": sum(1 for r in results if r.ok and r.attempts > 1),
        "invalid": sum(1 for r in results if not r.ok),
        "retries": sum(max(0, r.attempts - 1) for r in results),
    }
