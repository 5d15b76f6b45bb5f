"""What a fine-tuning config cuts short, relative to the schema defaults (the authors' harness).

Presets (``preset=smoke``) and CI shorten evaluation to stay fast: fewer examples, fewer
epochs, shorter inputs, less patience. Scores obtained that way are not comparable to
the paper's, and a cap on dev/test changes the test set itself. :func:`describe_caps`
lists every such shortening in words (the launcher prints them once at launch);
:func:`applied_caps` gives them as a dict for the result records (``evaluate_task`` returns
it as ``caps``).
"""

from __future__ import annotations

from typing import Any

from mcbio.config.schema import FinetuneConfig

# Keys that shorten an evaluation when lowered (or, for the example caps, when set at all).
EXAMPLE_CAPS = ("max_train_examples", "max_eval_examples")
LOWER_IS_SHORTER = ("epochs", "max_length", "max_length_multilabel", "max_context", "early_stopping_patience")

_WHAT = {
    "max_train_examples": "training split cut to its first {v} examples",
    "max_eval_examples": "dev AND test splits cut to their first {v} examples, test scores are on that slice only",
    "epochs": "training stops after {v} epochs",
    "max_length": "NER and single-label inputs capped at {v} tokens (longer ones truncated or windowed)",
    "max_length_multilabel": "multi-label inputs capped at {v} tokens (longer ones truncated or windowed)",
    "max_context": "model context overridden to {v} tokens",
    "early_stopping_patience": "training stops once {v} epoch(s) pass without a better dev score",
}


def _default_text(key: str, default: Any) -> str:
    if default is None:
        return {"max_context": "the model's own context", "early_stopping_patience": "never stop early",
                "max_length": "the model's context", "max_length_multilabel": "the model's context"}.get(key, "all")
    return str(default)


def _shorter(key: str, value: Any, default: Any) -> bool:
    if value is None:
        return False
    if key in EXAMPLE_CAPS or default is None:
        return True  # any cap is shorter than "all" / "the model's context" / "no early stopping"
    return value < default


def applied_caps(cfg: FinetuneConfig) -> dict[str, Any]:
    """``{"max_train_examples": 96, "max_eval_examples": None, "epochs": 2, ...}``.

    The two example caps are always present (None = all examples); the other keys only when
    they shorten the run relative to :class:`FinetuneConfig`'s defaults. ``hp_search_epochs``
    appears when a grid search trains its trials for fewer epochs.
    """
    defaults = FinetuneConfig()
    caps: dict[str, Any] = {key: getattr(cfg, key) for key in EXAMPLE_CAPS}
    for key in LOWER_IS_SHORTER:
        value, default = getattr(cfg, key), getattr(defaults, key)
        if _shorter(key, value, default):
            caps[key] = value
    search = cfg.hp_search
    if (search.lr or search.batch_size or search.warmup_ratio) and search.epochs and search.epochs < cfg.epochs:
        caps["hp_search_epochs"] = search.epochs
    return caps


def describe_caps(cfg: FinetuneConfig) -> list[str]:
    """One line per cap or shortening ``cfg`` applies relative to the schema defaults; [] for none.

    >>> describe_caps(FinetuneConfig(max_eval_examples=64))[0]
    'max_eval_examples=64: dev AND test splits cut to their first 64 examples, test scores are on that slice only (default: all)'
    """
    defaults = FinetuneConfig()
    lines = []
    for key, value in applied_caps(cfg).items():
        if key == "hp_search_epochs":
            lines.append(f"hp_search.epochs={value}: grid-search trials train for {value} epoch(s) (default: epochs={cfg.epochs})")
            continue
        if value is None:
            continue
        default = _default_text(key, getattr(defaults, key))
        lines.append(f"{key}={value}: {_WHAT[key].format(v=value)} (default: {default})")
    return lines

