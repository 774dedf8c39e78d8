"""Short content digests: of configurations and of tensors (the keys of every cache and saved-set reuse)."""

from __future__ import annotations

import hashlib
import json
import weakref

import torch

from utils.data import Dataset


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versioned(key: dict) -> dict:
    """`key` with the torch version, for cache keys of artefacts whose numbers depend on it."""
    return {**key, "torch": str(torch.__version__)}


_DIGESTS: dict[tuple, tuple[list[weakref.ref], str]] = {}


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Short SHA-256 of tensor contents (identifies a training set in cache keys).

    Memoised by tensor identity and version counter, so a dataset is hashed once however often its digest is
    used, and again after an in-place change (a change made around torch, e.g. through `.numpy()`, is not seen)."""
    key = tuple((id(t), t._version) for t in tensors)
    hit = _DIGESTS.get(key)
    if hit is not None and all(ref() is t for ref, t in zip(hit[0], tensors)):
        return hit[1]
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    refs = [weakref.ref(t, lambda _, k=key: _DIGESTS.pop(k, None)) for t in tensors]
    _DIGESTS[key] = (refs, digest.hexdigest()[:16])
    return _DIGESTS[key][1]


def data_digest(data: Dataset) -> str:
    """Digest of a dataset's training images and labels (part of every reuse, checkpoint and cache key)."""
    return tensor_digest(data.x_train, data.y_train)
