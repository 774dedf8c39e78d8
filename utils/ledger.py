"""The committed record of finished units of work, `<results>/units/<kind>/<hash>.json`, and the run's budget.

A unit (an evaluation, a full-data training, an expert-buffer summary, a distilled set) is recorded the moment it
finishes, atomically, as plain JSON: its portable key (what it computes: data digest, settings, profile, seed),
its value and a stamp (code digest, profile, seed, machine, precision, torch version, wall seconds, date,
notebook). The file name hashes only the key, so a unit recorded on one machine is reused on any other; a record
is reused while its stamp's code digest (`utils.digest.code_digest`), profile and seed are the run's, else it is
stale and recomputed. Notebooks open the ledger of their results folder (`utils.notebook.start`); without one
(library use, tests) nothing is recorded or reused.

The budget: `DD_DEADLINE` (seconds since the epoch, set by `python -m utils.pipeline --budget-minutes`) makes
every unit that would start after it raise `BudgetExhausted` instead (`check_budget`, called where units start).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from utils.digest import code_digest, config_hash
from utils.results import atomic_write

UNITS = "units"
DEADLINE_ENV = "DD_DEADLINE"
MACHINE_ENV = "DD_MACHINE_LABEL"
# Key entries that describe where a unit ran, not what it computes: kept out of the portable key.
MACHINE_KEYS = ("precision", "device_class", "torch", "device")


class BudgetExhausted(Exception):
    """The run's budget (`DD_DEADLINE`) ran out before a unit started; the pipeline stops cleanly on it."""


def check_budget() -> None:
    """Raise `BudgetExhausted` when the run's deadline has passed (called at every unit boundary)."""
    deadline = os.environ.get(DEADLINE_ENV)
    if deadline and time.time() >= float(deadline):
        ended = datetime.fromtimestamp(float(deadline), timezone.utc).isoformat(timespec="seconds")
        raise BudgetExhausted(f"the run's budget ended at {ended}; stopping before the next unit")


def machine_label(device: torch.device) -> str:
    """The machine a unit ran on: env `DD_MACHINE_LABEL` if set (tests fake a second machine), else
    `utility.hardware_name`."""
    from utility import hardware_name

    return os.environ.get(MACHINE_ENV) or hardware_name(torch.device(device))


def portable(key: dict) -> dict:
    """`key` without the entries that say where it ran (`MACHINE_KEYS`) and with which code (the stamp says that),
    normalised to plain JSON."""
    return json.loads(json.dumps({k: v for k, v in key.items() if k not in (*MACHINE_KEYS, "code")}, sort_keys=True,
                                 default=str))


@dataclass(frozen=True)
class Ledger:
    """The unit records of one results folder, written by one notebook on one machine."""

    root: Path
    notebook: str
    profile: str
    seed: int
    machine: str
    precision: str

    def path(self, kind: str, key: dict) -> Path:
        """The record of the unit of `kind` with `key` (hashed without its machine entries)."""
        return self.root / UNITS / kind / f"{config_hash(portable(key))}.json"

    def read(self, kind: str, key: dict) -> dict | None:
        """The record of this unit if it was made by the current code with this profile and seed, else None
        (missing, stale or unreadable)."""
        path = self.path(kind, key)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != portable(key):
            return None
        stamp = record.get("stamp", {})
        current = {"code": code_digest(), "profile": self.profile, "seed": self.seed}
        return record if all(stamp.get(k) == v for k, v in current.items()) else None

    def write(self, kind: str, key: dict, value, seconds: float) -> dict:
        """Record a finished unit (atomically) and return the record."""
        record = {"kind": kind, "key": portable(key), "value": json.loads(json.dumps(value, default=str)),
                  "stamp": self.stamp(seconds)}
        text = json.dumps(record, sort_keys=True, indent=1) + "\n"
        atomic_write(self.path(kind, key), lambda p: p.write_text(text))
        return record

    def stamp(self, seconds: float) -> dict:
        """Where, when and with which code a unit was computed, and its wall seconds."""
        return {"code": code_digest(), "profile": self.profile, "seed": self.seed, "machine": self.machine,
                "precision": self.precision, "torch": str(torch.__version__), "seconds": round(float(seconds), 3),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notebook": self.notebook}


_OPEN: list[Ledger] = []


def open_ledger(ledger: Ledger | None) -> None:
    """Make `ledger` the one units are recorded in and reused from (None: none)."""
    _OPEN[:] = [ledger] if ledger is not None else []


def current() -> Ledger | None:
    """The open ledger, if a notebook opened one."""
    return _OPEN[0] if _OPEN else None


def recorded(kind: str, key: dict) -> dict | None:
    """The current record of a unit in the open ledger (None without a ledger or a current record)."""
    ledger = current()
    return None if ledger is None else ledger.read(kind, key)


def record(kind: str, key: dict, value, seconds: float) -> dict | None:
    """Record a finished unit in the open ledger (nothing without one); returns the record."""
    ledger = current()
    return None if ledger is None else ledger.write(kind, key, value, seconds)


def machine_of(kind: str, key: dict) -> str:
    """The machine a recorded unit ran on, else this run's ('' without a ledger)."""
    unit = recorded(kind, key)
    ledger = current()
    return unit["stamp"]["machine"] if unit is not None else ledger.machine if ledger is not None else ""


def records(root: str | os.PathLike) -> list[dict]:
    """Every unit record under `<root>/units/` (unreadable files skipped), sorted by path."""
    found = []
    for path in sorted(Path(root, UNITS).glob("*/*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return [r for r in found if isinstance(r, dict) and isinstance(r.get("stamp"), dict)]
