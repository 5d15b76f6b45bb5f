"""seqeval strict vs lenient; multi-label micro-F1 against scikit-learn and a hand count."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from mcbio.evaluate.classify import multi_hot, positive_weights
from mcbio.evaluate.metrics import multi_label_scores, ner_scores, single_label_scores


def test_strict_and_lenient_seqeval_differ_on_an_invalid_iob2_start():
    gold = [["B-DISO", "I-DISO", "O", "B-CHEM"]]
    # The predicted DISO starts with I- (invalid in IOB2): lenient (conlleval) counts it as
    # a correct entity, strict IOB2 does not; CHEM is right in both.
    pred = [["I-DISO", "I-DISO", "O", "B-CHEM"]]
    scores = ner_scores(gold, pred)
    assert scores["lenient_f1"] == 1.0
    assert abs(scores["strict_f1"] - 2 * 0.5 * 1.0 / 1.5) < 1e-9  # P = 1/1, R = 1/2 -> 2/3


def test_multi_label_micro_f1_matches_sklearn_and_a_hand_count():
    labels = {"a": 0, "b": 1, "c": 2}
    gold_rows = [["a", "b"], ["c"], ["a"], ["b", "c"]]
    pred_rows = [["a"], ["c", "a"], [], ["b", "c"]]
    gold, pred = multi_hot(gold_rows, labels), multi_hot(pred_rows, labels)
    ours = multi_label_scores(gold, pred)
    tp, fp, fn = 4, 1, 2  # a, c, b, c right; a extra in row 2; b and a missed
    assert abs(ours["micro_f1"] - 2 * tp / (2 * tp + fp + fn)) < 1e-12
    mlb = MultiLabelBinarizer(classes=sorted(labels))
    assert abs(ours["micro_f1"] - f1_score(mlb.fit_transform(gold_rows), mlb.transform(pred_rows), average="micro")) < 1e-12
    assert abs(ours["macro_f1"] - f1_score(gold, pred, average="macro", zero_division=0)) < 1e-12


def test_single_label_macro_f1_counts_every_label():
    # Label 2 is never predicted nor gold here: it still counts (F1 = 0) in the macro mean.
    scores = single_label_scores([0, 0, 1, 1], [0, 1, 1, 1], num_labels=3)
    expected = f1_score([0, 0, 1, 1], [0, 1, 1, 1], labels=[0, 1, 2], average="macro", zero_division=0)
    assert abs(scores["macro_f1"] - expected) < 1e-12
    assert scores["macro_f1"] < f1_score([0, 0, 1, 1], [0, 1, 1, 1], average="macro")


def test_positive_weights_are_negatives_over_positives():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    assert positive_weights(targets).tolist() == pytest.approx([1 / 3, 3.0, 1.0])
