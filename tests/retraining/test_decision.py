"""The promotion rule: gate, no worse on the original split, clearly better on the recent labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from iris_classifier.monitoring.feedback import JOINED_COLUMNS, Joined
from iris_classifier.retraining.dataset import in_holdout, split
from iris_classifier.retraining.decision import Scores, decide, mcnemar_p

RULES = {"tolerance": 0.02, "min_accuracy": 0.9, "significance": 0.05}


def right(pattern: str) -> np.ndarray:
    return np.array([c == "1" for c in pattern])


def test_mcnemar_is_the_exact_binomial_tail_over_the_discordant_flowers():
    p, wins, losses = mcnemar_p(right("11110000"), right("00000001"))
    assert (wins, losses) == (4, 1)
    assert math.isclose(p, (math.comb(5, 4) + math.comb(5, 5)) / 32)
    assert mcnemar_p(right("1010"), right("1010"))[0] == 1.0  # no discordant flower: no evidence


def test_a_challenger_that_learned_what_the_champion_gets_wrong_is_promoted():
    champion = Scores(original_accuracy=0.967, recent_right=right("0" * 40))
    challenger = Scores(original_accuracy=0.967, recent_right=right("1" * 39 + "0"))
    decision, reasons = decide(champion, challenger, **RULES)
    assert decision == "promoted", reasons
    assert any("McNemar p = " in reason and "< retrain.significance 0.05" in reason for reason in reasons)


def test_a_coin_flip_better_on_recent_labels_is_not_enough():
    champion = Scores(original_accuracy=0.967, recent_right=right("0101010101" * 3))
    challenger = Scores(original_accuracy=0.967, recent_right=right("1010101011" * 3))  # 18 vs 15: luck
    decision, reasons = decide(champion, challenger, **RULES)
    assert decision == "rejected"
    assert "not clearly better" in reasons[0]


def test_losing_the_original_split_or_the_gate_rejects_even_a_better_recent_score():
    champion = Scores(original_accuracy=0.967, recent_right=right("0" * 40))
    worse = Scores(original_accuracy=0.933, recent_right=right("1" * 40))
    decision, reasons = decide(champion, worse, **RULES)
    assert decision == "rejected"
    assert reasons[0].startswith("original held-out split: challenger 0.9330 < champion 0.9670")
    gate = Scores(original_accuracy=0.85, recent_right=right("1" * 40))
    decision, reasons = decide(Scores(0.86, right("0" * 40)), gate, **RULES)
    assert decision == "rejected" and reasons[0].startswith("accuracy gate: challenger 0.8500")


def test_the_split_of_a_label_never_changes_as_labels_arrive():
    rows = [
        {"request_id": f"r{i}", "index": i % 3, "sepal_length": 4 + i / 100, "sepal_width": 3.0, "petal_length": 1.5,
         "petal_width": 0.2, "predicted": "setosa", "species": "setosa", "model_version": "m", "received_at": i}
        for i in range(400)
    ]  # fmt: skip
    few = Joined(rows=pd.DataFrame(rows[:100], columns=JOINED_COLUMNS))
    many = Joined(rows=pd.DataFrame(rows, columns=JOINED_COLUMNS))
    _, held_few = split(few, seed=7, holdout_percent=30)
    _, held_many = split(many, seed=7, holdout_percent=30)
    assert 0.2 < len(held_many) / 400 < 0.4
    # the first 100 labels land on the same side whether 300 more came after them or not
    pd.testing.assert_frame_equal(held_few, held_many.iloc[: len(held_few)])
    assert held_many["sepal_length"].iloc[len(held_few)] >= 5.0  # and the next held row is a later label
    sides = [in_holdout(f"r{i}", 0, seed=seed, holdout_percent=30) for seed in (7, 8) for i in range(50)]
    assert sides[:50] != sides[50:]  # the seed matters
