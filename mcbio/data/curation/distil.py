"""Distil the LLM labels into a light classifier (TF-IDF + linear models) for the whole corpus.

The LLM labels a sample (``annotation.llm_sample_fraction``); the content type is learnt
with a logistic regression and each 1-10 score with a ridge regression (rounded, clipped).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from mcbio.config.curation import SCORE_KEYS, ClassifierConfig
from mcbio.data.curation.steps import CurationStep, is_curated
from mcbio.files import atomic_open

log = logging.getLogger(__name__)


class PassageLabeler:
    def __init__(self, cfg: ClassifierConfig) -> None:
        self.cfg = cfg
        self.vectorizer = None
        self.type_model = None
        self.constant_type: Optional[str] = None
        self.score_models: Dict[str, object] = {}

    def fit(self, texts: Sequence[str], labels: Sequence[dict]) -> "PassageLabeler":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, Ridge

        self.vectorizer = TfidfVectorizer(max_features=self.cfg.max_features, ngram_range=(1, self.cfg.ngram_max),
                                          sublinear_tf=True, strip_accents=None, lowercase=True)
        X = self.vectorizer.fit_transform(texts)
        types = [l["type"] for l in labels]
        if len(set(types)) == 1:
            self.constant_type = types[0]
        else:
            self.type_model = LogisticRegression(C=self.cfg.C, max_iter=1000).fit(X, types)
        for key in SCORE_KEYS:
            self.score_models[key] = Ridge(alpha=self.cfg.ridge_alpha).fit(X, [l[key] for l in labels])
        return self

    def predict(self, texts: Sequence[str]) -> List[dict]:
        X = self.vectorizer.transform(texts)
        types = [self.constant_type] * len(texts) if self.type_model is None else list(self.type_model.predict(X))
        scores = {k: np.clip(np.rint(m.predict(X)), 1, 10).astype(int) for k, m in self.score_models.items()}
        return [{**{k: int(scores[k][i]) for k in SCORE_KEYS}, "type": str(types[i])} for i in range(len(texts))]

    def save(self, path: str | Path) -> None:
        with atomic_open(path, "wb") as handle:
            pickle.dump(self, handle)

    @staticmethod
    def load(path: str | Path) -> "PassageLabeler":
        with open(path, "rb") as handle:
            return pickle.load(handle)


def evaluate_labeler(labeler: PassageLabeler, texts: Sequence[str], labels: Sequence[dict]) -> dict:
    if not texts:
        return {}
    pred = labeler.predict(texts)
    out = {"heldout": len(texts), "type_accuracy": float(np.mean([p["type"] == l["type"] for p, l in zip(pred, labels)]))}
    for key in SCORE_KEYS:
        out[f"{key}_mae"] = float(np.mean([abs(p[key] - l[key]) for p, l in zip(pred, labels)]))
    return out


def train_labeler(texts: List[str], labels: List[dict], cfg: ClassifierConfig, seed: int = 0) -> tuple[PassageLabeler, dict]:
    """Fit on the sample minus a held-out share, report held-out quality, refit on everything."""
    if len(texts) < cfg.min_labelled:
        raise ValueError(f"only {len(texts)} LLM-labelled passages: the classifier needs "
                         f"annotation.classifier.min_labelled={cfg.min_labelled}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_held = int(len(texts) * cfg.heldout_fraction)
    held, train = order[:n_held], order[n_held:]
    metrics: dict = {"labelled": len(texts)}
    if n_held:
        probe = PassageLabeler(cfg).fit([texts[i] for i in train], [labels[i] for i in train])
        metrics.update(evaluate_labeler(probe, [texts[i] for i in held], [labels[i] for i in held]))
    return PassageLabeler(cfg).fit(texts, labels), metrics


class ClassifierAnnotation(CurationStep):
    """Labels, with the distilled classifier, the passages the LLM did not label."""

    name = "classifier_annotate"

    def __init__(self, model_path: str, counter=None, batch_size: int = 256) -> None:
        super().__init__(counter)
        self.model_path = model_path
        self.batch_size = batch_size

    def run(self, data, rank: int = 0, world_size: int = 1):
        labeler = PassageLabeler.load(self.model_path)
        pending, batch = [], []  # order is kept: later steps group an article's passages by adjacency
        for doc in data or ():
            if not is_curated(doc) or doc.metadata.get("labels") is not None:
                self.stat_update("passthrough" if not is_curated(doc) else "llm_labelled")
            else:
                self.count_in(doc)
                batch.append(doc)
            pending.append(doc)
            if len(batch) >= self.batch_size:
                self._label(labeler, batch)
                yield from pending
                pending, batch = [], []
        if batch:
            self._label(labeler, batch)
        yield from pending

    def _label(self, labeler, batch):
        for doc, labels in zip(batch, labeler.predict([d.text for d in batch])):
            doc.metadata["labels"] = labels
            doc.metadata["labels_by"] = "classifier"
            self.count_kept(doc)
