"""Training/evaluation harness and metrics."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import utility
from networks import get_network
from utils.augment import DSA, strategy_for
from utils.metrics import classification_metrics, rank_correlations, roc_auc

CPU = torch.device("cpu")


def _subset(data, per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    picks = torch.cat([idx[torch.randperm(len(idx), generator=g)[:per_class]] for idx in data.class_indices()])
    return data.x_train[picks].clone(), data.y_train[picks].clone()


def test_evaluate_training_set_beats_chance(mnist):
    x, y = _subset(mnist, 20)
    test = (mnist.x_test[:1000], mnist.y_test[:1000])
    result = utility.evaluate_training_set(x, y, test, channels=1, num_classes=10, im_size=(28, 28),
                                           architecture="ConvNetD1W8", n_models=2, epochs=30, seed=0, device="cpu",
                                           precision="fp32", progress=False)
    assert result.architecture == "ConvNetD1W8"
    assert len(result.runs) == 2 and len(result.train_seconds) == 2
    assert all(set(run) >= {"accuracy", "balanced_accuracy", "auc", "loss"} for run in result.runs)
    assert result.mean() > 0.5, result.summary()
    assert all(run["auc"] > 0.8 for run in result.runs)
    # two models from different seeds differ; mean/std/summary agree with the runs
    accs = [run["accuracy"] for run in result.runs]
    assert result.mean() == pytest.approx(np.mean(accs)) and result.std() == pytest.approx(np.std(accs))
    assert result.summary() == f"{100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f}"


def _train_mlp(x, y, seed, epochs=5, augment=None):
    utility.set_seed(seed)
    model = get_network("MLP", 1, 10, (28, 28))
    history = utility.train(model, x, y, epochs=epochs, lr=0.05, batch_size=64, augment=augment)
    return model, history


def test_train_loss_falls_and_records_test_accuracy(mnist):
    x, y = _subset(mnist, 20)
    utility.set_seed(0)
    model = get_network("MLP", 1, 10, (28, 28))
    test = (mnist.x_test[:500], mnist.y_test[:500])
    history = utility.train(model, x, y, epochs=10, lr=0.05, batch_size=64, test=test)
    assert len(history.train_loss) == 10 and len(history.test_accuracy) == 10
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.test_accuracy[-1] > 0.5
    assert history.train_seconds > 0
    with pytest.raises(ValueError, match="step"):
        utility.train(model, x, y, epochs=1, schedule="linear")


def test_set_seed_makes_training_repeat(mnist):
    x, y = _subset(mnist, 10)
    augment = None
    runs = []
    for seed in (3, 3, 4):
        utility.set_seed(seed)
        augment = DSA(strategy_for("MNIST"))  # seeded from torch's seed when no seed is given
        model, history = _train_mlp(x, y, seed, epochs=3, augment=augment)
        runs.append((torch.cat([p.detach().flatten() for p in model.parameters()]), history.train_loss))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not torch.equal(runs[0][0], runs[2][0])


def test_device_and_precision_errors_name_allowed_values():
    with pytest.raises(ValueError) as err:
        utility.get_device("tpu")
    assert all(name in str(err.value) for name in ("auto", "cpu", "cuda"))
    with pytest.raises(ValueError) as err:
        utility.resolve_precision("fp8", CPU)
    assert all(name in str(err.value) for name in ("auto", "fp32", "bf16"))
    assert utility.get_device("cpu") == CPU
    assert utility.resolve_precision("auto", CPU) in ("fp32", "bf16")
    assert utility.resolve_precision("fp32", CPU) == "fp32"
    if not torch.cuda.is_available():
        assert utility.get_device("auto") == CPU
        with pytest.raises(ValueError, match="cuda"):
            utility.get_device("cuda")


def test_evaluate_matches_predictions():
    model = torch.nn.Linear(4, 3)
    x = torch.randn(50, 4)
    y = torch.randint(0, 3, (50,))
    metrics = utility.evaluate(model, x, y, batch_size=7)
    logits = model(x).detach()
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert metrics["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------- metrics


def _binary_logits(scores: list[float]) -> torch.Tensor:
    """Two-class logits whose class-1 probability increases with `score` (predicts 1 iff score > 0)."""
    s = torch.tensor(scores)
    return torch.stack([torch.zeros_like(s), s], 1)


def test_classification_metrics_binary_hand_case():
    # negatives: three right, one wrong; positives: one wrong, one right
    logits = _binary_logits([-3, -2, -1, 2, -0.5, 3])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    m = classification_metrics(logits, labels)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # (pos, neg) pairs ranked correctly: -0.5 beats 3 negatives, 3 beats all 4 -> 7 / 8
    assert m["auc"] == pytest.approx(7 / 8)


def test_roc_auc_ties_count_half_and_degenerate_is_nan():
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([True, False, True, False])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.1, 0.2, 0.2]), np.array([False, True, False])) == pytest.approx(0.75)
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_classification_metrics_multiclass():
    # perfectly separated three-class logits, class 2 absent from the labels
    logits = torch.tensor([[5.0, 0, 0], [4, 1, 0], [0, 5, 0], [1, 4, 0], [0, 3, 2]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    m = classification_metrics(logits, labels)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["auc"] == pytest.approx(1.0)  # class 2 (no positives) is skipped, not NaN
    # one class always wrong: balanced accuracy weights the classes equally, accuracy does not
    labels = torch.tensor([0, 0, 0, 0, 2])
    m = classification_metrics(logits[[0, 1, 0, 1, 0]], labels)
    assert m["accuracy"] == pytest.approx(0.8) and m["balanced_accuracy"] == pytest.approx(0.5)


def test_rank_correlations_known_values():
    same = rank_correlations([1, 2, 3, 4], [10, 20, 30, 45])
    assert same == pytest.approx({"spearman": 1.0, "kendall": 1.0})
    reversed_ = rank_correlations([1, 2, 3, 4], [4, 3, 2, 1])
    assert reversed_ == pytest.approx({"spearman": -1.0, "kendall": -1.0})
    # two adjacent swaps: sum d^2 = 4 -> rho = 1 - 6*4/(5*24) = 0.8; 2 of 10 pairs discordant -> tau = 0.6
    swapped = rank_correlations([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert swapped == pytest.approx({"spearman": 0.8, "kendall": 0.6})


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"),
                                                          (False, False, "fp32")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    """Plain AVX-512 (capability 'AVX512') emulates bf16, about 9x slower: 'auto' must stay fp32 there."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert utility.resolve_precision("auto", CPU) == expected


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cuda_ignores_emulated_bf16(monkeypatch, native):
    """A T4 or V100 reports bf16 'supported' through emulation; only native support counts."""
    calls = []

    def supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert utility.resolve_precision("auto", torch.device("cuda")) == ("bf16" if native else "fp32")
    assert calls == [False]


def test_reproducibility_settings_disable_tf32_for_fp32_and_make_cuda_deterministic():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        utility.configure_reproducibility(torch.device("cuda"), "fp32")   # flags only: no GPU needed
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        utility.configure_reproducibility(torch.device("cpu"), "bf16")
        assert torch.backends.cuda.matmul.allow_tf32, "bf16 runs are labelled bf16; TF32 is not a hidden downgrade"
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])
