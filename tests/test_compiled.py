"""Compiled training and inference (`utils.compiled`): same numbers as eager, padding, fallback, the switch.

Only the two `test_compiled_*` tests pay inductor's compile time (a tiny ConvNet on 8x8 images; artefacts are
cached under the project's `.cache/inductor`, so a second run is quick); everything else runs eagerly.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

import utility
from networks import get_network
from utils import compiled
from utils.paths import cache_dir

CPU = torch.device("cpu")
PRECISION = utility.resolve_precision("auto", CPU)
# bf16 rounds to 8 significant bits; compiled and eager kernels round in different places.
TOLERANCE = {"bf16": 3e-2, "fp32": 1e-4}[PRECISION]


def _tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_network("ConvNetD1W8", 3, 4, (8, 8))


def _data(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch):
    """Fresh compiled wrappers (no compiled function, no recorded failure) and no remembered log lines."""
    for name, fn in (("_LOSS", compiled._weighted_loss), ("_LOGITS", compiled._logits),
                     ("_EMBED", compiled._embed)):
        monkeypatch.setattr(compiled, name, compiled._Compiled(fn))
    monkeypatch.setattr(compiled, "_logged", set())


def _train_and_predict(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.nn.Module, list[float], torch.Tensor]:
    model = _tiny()
    torch.manual_seed(2)
    history = utility.train(model, x, y, epochs=3, lr=0.05, batch_size=8, precision=PRECISION)
    return model, history.train_loss, utility.predict(model, x, batch_size=8, precision=PRECISION)


def test_pad_rows_repeats_rows_cyclically():
    x = torch.arange(3)
    assert compiled.pad_rows(x, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert compiled.pad_rows(x, 2) is x


def test_padded_batch_has_the_loss_and_gradient_of_the_batch(fresh, monkeypatch):
    monkeypatch.setenv(compiled.SWITCH, "0")
    x, y = _data(5)
    padded, plain = _tiny(), _tiny()
    loss = compiled.train_step(padded, x, y, precision="fp32", batch_rows=8)
    torch.nn.functional.cross_entropy(plain(x), y).backward()
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(plain(x), y).item(), rel=1e-5)
    for p, q in zip(padded.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_compiled_training_and_prediction_match_eager(fresh, monkeypatch):
    x, y = _data(20)   # batches of 8, 8 and a ragged 4 (padded to 8 when compiled)
    monkeypatch.setenv(compiled.SWITCH, "0")
    eager_model, eager_loss, eager_logits = _train_and_predict(x, y)
    monkeypatch.setenv(compiled.SWITCH, "1")
    model, loss, logits = _train_and_predict(x, y)
    assert compiled._LOSS._compiled is not None and compiled._LOSS.error is None
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache_dir() / "inductor")
    assert compiled._LOGITS._compiled is not None and compiled._LOGITS.error is None
    assert loss == pytest.approx(eager_loss, rel=TOLERANCE)
    for p, q in zip(model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=TOLERANCE, atol=TOLERANCE * p.abs().max().item())
    torch.testing.assert_close(logits, eager_logits, rtol=TOLERANCE, atol=TOLERANCE * eager_logits.abs().max().item())


def test_compiled_embedding_matches_eager_with_and_without_graph(fresh, monkeypatch):
    net, (x, _) = _tiny(), _data(6)
    for p in net.parameters():
        p.requires_grad_(False)
    results = {}
    for switch in ("0", "1"):
        monkeypatch.setenv(compiled.SWITCH, switch)
        with torch.no_grad():
            frozen = compiled.embed(net, x, precision=PRECISION)
        leaf = x.clone().requires_grad_(True)
        compiled.embed(net, leaf, precision=PRECISION).square().sum().backward()
        results[switch] = (frozen, leaf.grad)
    assert compiled._EMBED._compiled is not None and compiled._EMBED.error is None
    for eager, fast in zip(results["0"], results["1"], strict=True):
        torch.testing.assert_close(fast, eager, rtol=TOLERANCE, atol=TOLERANCE * eager.abs().max().item())


def test_failed_compilation_falls_back_to_eager_with_one_log_line(fresh, monkeypatch, caplog):
    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("C++ compile error: simulated")
        return call

    monkeypatch.setenv(compiled.SWITCH, "1")
    monkeypatch.setattr(torch, "compile", broken)
    x, y = _data(20)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        model, loss, logits = _train_and_predict(x, y)
    monkeypatch.setenv(compiled.SWITCH, "0")
    _, eager_loss, eager_logits = _train_and_predict(x, y)
    assert loss == eager_loss
    torch.testing.assert_close(logits, eager_logits, rtol=0, atol=0)
    lines = [r.getMessage() for r in caplog.records if "_weighted_loss" in r.getMessage()]
    assert lines == ["_weighted_loss runs eagerly: compilation failed (RuntimeError: C++ compile error: simulated)"]


def test_missing_compiler_is_named_and_nothing_is_compiled(fresh, monkeypatch, caplog):
    monkeypatch.setenv(compiled.SWITCH, "1")
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("torch.compile called without a compiler"))
    assert compiled.unavailable_reason(CPU) == "no C++ compiler ('no-such-compiler') found"
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        _train_and_predict(*_data(8))
    assert any("no C++ compiler" in r.getMessage() for r in caplog.records)


def test_switch_off_is_honoured(fresh, monkeypatch):
    monkeypatch.setenv(compiled.SWITCH, "0")
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("torch.compile called with DD_COMPILE=0"))
    assert compiled.unavailable_reason(CPU) == "DD_COMPILE=0"
    _train_and_predict(*_data(8))
    assert compiled._LOSS._compiled is None and compiled._LOGITS._compiled is None


def test_a_profile_that_does_not_compile_switches_compilation_off_unless_told_otherwise(monkeypatch):
    from utils.profiles import CPU, PAPER, SMOKE

    cpu = torch.device("cpu")
    assert not SMOKE.compile and CPU.compile and PAPER.compile
    monkeypatch.delenv(compiled.SWITCH, raising=False)
    compiled.follow_profile(CPU.compile)
    assert compiled.SWITCH not in os.environ
    compiled.follow_profile(SMOKE.compile)
    assert compiled.unavailable_reason(cpu) == f"{compiled.SWITCH}=0"
    monkeypatch.setenv(compiled.SWITCH, "1")   # asked for explicitly: the smoke profile compiles too
    compiled.follow_profile(SMOKE.compile)
    assert os.environ[compiled.SWITCH] == "1"
