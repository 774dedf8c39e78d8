"""Classification metrics (accuracy, balanced accuracy, AUC) and rank correlations, from logits."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney U of the positives' scores over all pairs (ties count one half)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float(stats.mannwhitneyu(scores[positive], scores[~positive]).statistic / (n_pos * n_neg))


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall) and AUC (binary, or macro one-vs-rest)."""
    probs = logits.float().softmax(1).numpy()
    y = labels.numpy()
    pred = probs.argmax(1)
    classes = range(probs.shape[1])
    recalls = [(pred[y == c] == c).mean() for c in classes if (y == c).any()]
    if probs.shape[1] == 2:
        auc = roc_auc(probs[:, 1], y == 1)
    else:
        auc = float(np.nanmean([roc_auc(probs[:, c], y == c) for c in classes]))
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(recalls)), "auc": auc}


def rank_correlations(a: list[float], b: list[float]) -> dict[str, float]:
    """Spearman's rho (average ranks for ties) and Kendall's tau-b (corrected for ties) between two score lists;
    NaN where a list is constant."""
    return {"spearman": float(stats.spearmanr(a, b).statistic),
            "kendall": float(stats.kendalltau(a, b, variant="b").statistic)}
