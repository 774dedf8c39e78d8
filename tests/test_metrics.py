"""Rank correlations and AUC come from scipy.stats, with ties handled."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from utils.metrics import rank_correlations, roc_auc


def test_rank_correlations_handle_ties():
    # a has one tie: Spearman on average ranks = 4.5 / sqrt(4.5 * 5); Kendall tau-b = 5 / sqrt((6 - 1) * 6)
    tied = rank_correlations([1, 2, 2, 3], [1, 2, 3, 4])
    assert tied == pytest.approx({"spearman": 4.5 / math.sqrt(22.5), "kendall": 5 / math.sqrt(30)})
    with pytest.warns(stats.ConstantInputWarning):
        constant = rank_correlations([1, 1, 1], [1, 2, 3])
    assert all(math.isnan(v) for v in constant.values())


def test_auc_is_the_mann_whitney_statistic_with_ties_half():
    scores, positive = np.array([0.1, 0.4, 0.4, 0.8]), np.array([False, True, False, True])
    assert roc_auc(scores, positive) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
