"""seqeval strict vs lenient; multi-label micro-F1 against scikit-learn and a hand count."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from mcbio.evaluate.classify import gold_targets, label_ids, multi_hot, positive_weights
from mcbio.evaluate.metrics import (
    multi_label_decisions,
    multi_label_report,
    multi_label_scores,
    ner_scores,
    single_label_scores,
)


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


def test_single_label_macro_f1_averages_over_labels_present_in_gold_or_predictions():
    # Four training labels; label 3 is neither in the test gold nor ever predicted.
    # Per-label F1: 0 -> 1/2 (tp 1, fp 1, fn 1), 1 -> 2/3, 2 -> 4/5.
    gold, pred = [0, 0, 1, 2, 2, 2], [0, 1, 1, 0, 2, 2]
    scores = single_label_scores(gold, pred, num_labels=4)
    assert scores["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    assert round(scores["macro_f1"], 4) == 0.6556
    assert scores["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))  # scikit-learn's default
    # Averaging over every training label (the old behaviour) would give 0.4917.
    assert round(f1_score(gold, pred, labels=[0, 1, 2, 3], average="macro", zero_division=0), 4) == 0.4917
    assert scores["micro_f1"] == pytest.approx(4 / 6)
    # A gold label unseen in training (an id beyond the head's, never predicted) still counts, as a miss.
    assert single_label_scores([0, 4], [0, 0], num_labels=4)["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def _splits(train, test):
    return {"train": [("x", row) for row in train], "dev": [("x", ["A"])], "test": [("x", row) for row in test]}


def test_single_label_labels_seen_only_in_test_are_classes_of_their_own(caplog):
    """Train labels A, B; test gold [A, B, Z, Y] with Z and Y never seen in training; the head
    predicts [A, B, A, A] (it has outputs for A and B only).

    Per class: A tp 1, fp 2, fn 0 -> P 1/3, R 1, F1 1/2; B tp 1 -> F1 1; Z and Y tp 0, fn 1 -> F1 0.
    Macro-F1 = (1/2 + 1 + 0 + 0) / 4 = 0.375; micro-F1 = accuracy = 2/4. Mapping every unseen
    label to one id (the old -1) would make Z and Y one class: (1/2 + 1 + 0) / 3 = 0.5.
    """
    import logging

    with caplog.at_level(logging.WARNING, logger="mcbio.evaluate.classify"):
        head, scored = label_ids(_splits([["A"], ["B"]], [["A"], ["B"], ["Z"], ["Y"]]))
    assert "never predicted" in caplog.text and "['Y', 'Z']" in caplog.text
    assert head == {"A": 0, "B": 1} and scored == {"A": 0, "B": 1, "Y": 2, "Z": 3}
    gold = gold_targets([["A"], ["B"], ["Z"], ["Y"]], scored, multi_label=False)
    scores = single_label_scores(gold.tolist(), [0, 1, 0, 0], num_labels=len(head))
    assert scores["macro_f1"] == pytest.approx(0.375)
    assert scores["micro_f1"] == pytest.approx(0.5)
    # With one unseen label, gold [A, B, Z] and predictions [A, B, A]: A 2/3, B 1, Z 0.
    _, scored = label_ids(_splits([["A"], ["B"]], [["A"], ["B"], ["Z"]]))
    one = single_label_scores(gold_targets([["A"], ["B"], ["Z"]], scored, False).tolist(), [0, 1, 0])
    assert one == pytest.approx({"macro_f1": (2 / 3 + 1 + 0) / 3, "micro_f1": 2 / 3})


def test_multi_label_labels_seen_only_in_test_count_as_misses():
    """Train labels A, B. Example 1: gold {A, Z}, predicted {A}; example 2: gold {Z} alone, predicted {}.

    Z is never seen in training: tp 1 (A), fp 0, fn 2 (Z twice) -> micro-F1 = 2/(2+0+2) = 0.5
    (dropping Z, the old behaviour, gives 1.0: example 2 becomes an all-negative row).
    Macro over labels with a gold or predicted positive (A, Z): (1 + 0) / 2. Forcing the
    top-1 label on example 2 can only pick a trained label (B here): fp 1 -> 2/(2+1+2) = 0.4.
    """
    head, scored = label_ids(_splits([["A"], ["A", "B"]], [["A", "Z"], ["Z"]]))
    gold = gold_targets([["A", "Z"], ["Z"]], scored, multi_label=True)
    assert gold.tolist() == [[1, 0, 1], [0, 0, 1]]
    probs = np.array([[0.9, 0.1], [0.2, 0.3]])  # the head's two outputs
    report = multi_label_report(gold, probs, 0.5)
    assert report["micro_f1"] == pytest.approx(0.5)
    assert report["macro_f1"] == pytest.approx(0.5)
    assert report["micro_f1_top1"] == pytest.approx(0.4)
    # The brief's case: gold {A, Z} predicted {A} alone -> 2*1/(2*1+0+1).
    assert multi_label_scores(gold[:1], np.array([[1, 0]]))["micro_f1"] == pytest.approx(2 / 3)


def test_multi_label_threshold_and_forced_top1_variant():
    gold = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    probs = np.array([[0.9, 0.2, 0.1],    # passes on label 0
                      [0.3, 0.45, 0.1],   # nothing passes: top-1 forces label 1 (right)
                      [0.4, 0.2, 0.35]])  # nothing passes: top-1 forces label 0 (wrong)
    assert multi_label_decisions(probs, 0.5).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert multi_label_decisions(probs, 0.5, force_top1=True).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    report = multi_label_report(gold, probs, 0.5)
    assert report["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 2))  # tp 1, fn 2
    assert report["micro_f1_top1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    assert report["micro_f1"] == multi_label_scores(gold, multi_label_decisions(probs, 0.5))["micro_f1"]
    # Macro over labels with a gold or predicted positive: all three here.
    assert report["macro_f1_top1"] == pytest.approx(f1_score(gold, multi_label_decisions(probs, 0.5, True),
                                                             average="macro", zero_division=0))


def test_multi_label_macro_f1_ignores_labels_absent_from_gold_and_predictions():
    gold = np.array([[1, 0, 0], [1, 1, 0]])
    pred = np.array([[1, 0, 0], [1, 0, 0]])  # label 2: never gold, never predicted
    assert multi_label_scores(gold, pred)["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)


def test_positive_weights_are_negatives_over_positives():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    assert positive_weights(targets).tolist() == pytest.approx([1 / 3, 3.0, 1.0])
