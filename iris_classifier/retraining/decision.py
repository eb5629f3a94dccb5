"""Champion against challenger, TFX Evaluator-style: the challenger is "blessed" only when it is better.

Promote only if the challenger
1. passes the accuracy gate (evaluate.min_accuracy) on the original held-out split,
2. is at least as good there as the champion, within retrain.tolerance, and
3. is better on the recent held-out labels, by an exact one-sided McNemar test at retrain.significance:
   among the recent flowers exactly one of the two models gets right, the challenger must win clearly
   more than half. Random labels give both models coin flips there, so the test refuses them; a new
   variety the champion gets wrong and the challenger learned passes easily.
Disagreeing with the champion is never a reason to refuse a label: a new variety disagrees by definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """One model on the two judging sets: which of the recent flowers it got right, and the accuracies."""

    original_accuracy: float
    recent_right: np.ndarray  # bool per recent held-out label

    @property
    def recent_accuracy(self) -> float:
        return float(self.recent_right.mean()) if len(self.recent_right) else float("nan")


def mcnemar_p(challenger_right: np.ndarray, champion_right: np.ndarray) -> tuple[float, int, int]:
    """One-sided exact McNemar: P(challenger wins >= b of the n discordant flowers | both equally good)."""
    wins = int((challenger_right & ~champion_right).sum())
    losses = int((~challenger_right & champion_right).sum())
    n = wins + losses
    if n == 0:
        return 1.0, wins, losses
    p = sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n
    return float(p), wins, losses


def decide(
    champion: Scores, challenger: Scores, *, tolerance: float, min_accuracy: float, significance: float
) -> tuple[str, list[str]]:
    """("promoted" | "rejected", the reasons: every rule with its figures, failed ones first)."""
    failed, passed = [], []
    gate = challenger.original_accuracy >= min_accuracy
    (passed if gate else failed).append(
        f"accuracy gate: challenger {challenger.original_accuracy:.4f} on the original held-out split "
        f"{'>=' if gate else '<'} evaluate.min_accuracy {min_accuracy}"
    )
    floor = champion.original_accuracy - tolerance
    kept = challenger.original_accuracy >= floor - 1e-12
    (passed if kept else failed).append(
        f"original held-out split: challenger {challenger.original_accuracy:.4f} "
        f"{'>=' if kept else '<'} champion {champion.original_accuracy:.4f} - retrain.tolerance {tolerance}"
    )
    p, wins, losses = mcnemar_p(challenger.recent_right, champion.recent_right)
    better = challenger.recent_accuracy > champion.recent_accuracy and p < significance
    (passed if better else failed).append(
        f"recent labels ({len(challenger.recent_right)} held out): challenger {challenger.recent_accuracy:.4f} vs "
        f"champion {champion.recent_accuracy:.4f}; challenger alone right on {wins}, champion alone on {losses}: "
        f"McNemar p = {p:.3g} {'<' if p < significance else '>='} retrain.significance {significance}"
        + ("" if better else " (not clearly better)")
    )
    return ("rejected" if failed else "promoted"), failed + passed
