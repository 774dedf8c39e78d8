"""Seconds to load each dataset from a warm cache (the README's "well under 2 s").

Run: `DD_DATA_ROOT=/path/to/data python benchmarks/data_loading.py` on a quiet machine (best of 3 per dataset).
"""

from __future__ import annotations

import time

from utils.data import DATASETS, load_dataset


def main() -> None:
    for name in DATASETS:
        load_dataset(name)   # warms the cache
        best = min(_timed(name) for _ in range(3))
        print(f"{name:8s} {best:.2f} s")


def _timed(name: str) -> float:
    start = time.perf_counter()
    load_dataset(name)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
