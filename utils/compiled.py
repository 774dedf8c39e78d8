"""Compiled training and inference: the one place where networks are run through `torch.compile`.

Inductor turns a network's forward (and, through AOTAutograd, its backward) into fused C++/OpenMP kernels on a
CPU (Triton kernels on a GPU); with bf16 autocast on a CPU that computes bf16 natively this is several times
faster than eager PyTorch for the ConvNet (`benchmarks/README.md`). Four entry points share it:

- `train_step`: cross-entropy on one batch, back-propagated (used by `utility.train`, hence by evaluation,
  full-data training and MTT expert training, and by gradient matching's inner network training);
- `gradients`: the parameter gradients of that loss (gradient matching's real-batch gradients);
- `logits`: inference without a graph (used by `utility.predict`);
- `embed`: a network's `embed` features, with or without a graph (distribution matching).

Shapes are static, so each (network, input shape) compiles once per process; compiled artefacts are cached
under `cache_dir()/inductor` (`TORCHINDUCTOR_CACHE_DIR`, unless already set), so a second run does not pay the
C++ compilation again. A batch smaller than the batch shape (the ragged last batch of an epoch) is padded to
it with copies of its own rows whose loss weight is zero: every network here normalises per sample (instance
norm, no batch norm), so the padded rows change neither the loss nor the gradient, and every batch of a run
has one shape. A set smaller than the batch size is one batch of its own size, as in the DC protocol.

`DD_COMPILE=0` turns compilation off. Without a C++ compiler (CPU) or Triton (GPU), or when compiling fails,
everything runs eagerly, and one log line says why.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from utils.paths import cache_dir

SWITCH = "DD_COMPILE"
# Dynamo recompiles a function for every new network type and input shape; the studies train a few dozen
# (architectures x datasets x NAS variants) in one process, more than dynamo's default limit of 8.
RECOMPILE_LIMIT = 64

log = logging.getLogger(__name__)
_logged: set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.log(level, message)


def unavailable_reason(device: torch.device) -> str | None:
    """Why networks run eagerly on `device` (switched off, no compiler), or None when they are compiled."""
    if os.environ.get(SWITCH, "1") == "0":
        return f"{SWITCH}=0"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed"
    compiler = os.environ.get("CXX") or "g++"
    return None if shutil.which(compiler) else f"no C++ compiler ({compiler!r}) found"


def follow_profile(compile: bool) -> None:
    """Switch compilation off for a profile that does not compile (`Profile.compile`), unless `DD_COMPILE` is
    set: the variable reaches the notebook's kernel, its units on other processes and anything they start."""
    if not compile:
        os.environ.setdefault(SWITCH, "0")


def _configure() -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # importing inductor writes its default into the variable, so a default value is not the user's choice
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)


class _Compiled:
    """`fn` compiled with static shapes on first use; eager wherever compilation is off or has failed."""

    def __init__(self, fn: Callable):
        self.fn, self._compiled, self.error = fn, None, None

    def run(self, device: torch.device, call: Callable[[Callable], torch.Tensor]) -> torch.Tensor:
        """`call(f)` with f the compiled function, or with the eager one (after logging why)."""
        reason = unavailable_reason(device)
        if reason is None and self.error is None:
            if self._compiled is None:
                _configure()
                self._compiled = torch.compile(self.fn, dynamic=False)
            try:
                return call(self._compiled)
            except Exception as error:  # inductor/dynamo raise many types; eager re-raises genuine errors
                self.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        reason = reason or f"compilation failed ({self.error})"
        _log_once(logging.INFO if reason.startswith(SWITCH) else logging.WARNING,
                  f"{self.fn.__name__} runs eagerly: {reason}")
        return call(self.fn)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed-precision context: bf16 autocast for 'bf16', a no-op for 'fp32' (a plain context object, so that
    compiled functions trace it)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _weighted_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                   precision: str) -> torch.Tensor:
    with autocast(x.device, precision):
        out = model(x)
    return (F.cross_entropy(out.float(), y, reduction="none") * weight).sum() / weight.sum()


def _logits(model: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    with autocast(x.device, precision):
        return model(x).float()


def _embed(net: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    with autocast(x.device, precision):
        return net.embed(x).float()


_LOSS, _LOGITS, _EMBED = _Compiled(_weighted_loss), _Compiled(_logits), _Compiled(_embed)


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """`x` with copies of its own rows (cyclically) appended up to `rows` rows."""
    if len(x) >= rows:
        return x
    return x[torch.arange(rows, device=x.device) % len(x)]


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, precision: str,
               batch_rows: int) -> torch.Tensor:
    """Mean cross-entropy of `model` on (x, y), back-propagated into the parameters' `.grad`; the detached loss.

    A batch with fewer than `batch_rows` rows is padded to it with zero-weight rows (one static shape).
    """
    weight = (torch.arange(max(len(x), batch_rows), device=x.device) < len(x)).float()
    xp, yp = pad_rows(x, batch_rows), pad_rows(y, batch_rows)

    def call(loss_fn: Callable) -> torch.Tensor:
        loss = loss_fn(model, xp, yp, weight, precision)
        loss.backward()
        return loss.detach()

    return _LOSS.run(x.device, call)


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, precision: str) -> list[torch.Tensor]:
    """Float gradients of the mean cross-entropy of `model` on (x, y) with respect to its parameters (no graph)."""
    params = list(model.parameters())
    weight = torch.ones(len(x), device=x.device)
    return _LOSS.run(x.device, lambda f: [g.float() for g in torch.autograd.grad(f(model, x, y, weight, precision),
                                                                                 params)])


def logits(model: nn.Module, x: torch.Tensor, *, precision: str, batch_rows: int) -> torch.Tensor:
    """Float logits of `model` on the batch `x` without a graph (padded to `batch_rows` rows internally)."""
    with torch.no_grad():
        return _LOGITS.run(x.device, lambda f: f(model, pad_rows(x, batch_rows), precision))[: len(x)]


def embed(net: nn.Module, x: torch.Tensor, *, precision: str) -> torch.Tensor:
    """Float `net.embed(x)`; with a graph to `x` unless called under `torch.no_grad()`."""
    return _EMBED.run(x.device, lambda f: f(net, x, precision))
