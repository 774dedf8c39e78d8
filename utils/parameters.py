"""The papermill parameters every notebook takes, checked and coerced before anything runs: values that papermill's
YAML or a command line's `-r`/`-p` deliver as text (`seed="0"`) become what the code expects, and each parameter
that cannot is named in one line with the values it allows."""

from __future__ import annotations

import os
from dataclasses import dataclass

from utility import DEVICES
from utils.executor import EXECUTORS
from utils.profiles import PROFILES


class ParameterError(ValueError):
    """Notebook parameters with values outside what they allow (one line per parameter)."""


@dataclass(frozen=True)
class Parameters:
    """A notebook's parameters as the code expects them."""

    profile: str
    data_root: str | None
    results_dir: str | None
    seed: int
    device: str
    executor: str | None


def _choice(name: str, value: object, allowed: tuple[str, ...], optional: bool = False) -> str | None:
    text = value.strip() if isinstance(value, str) else value
    if optional and text in (None, "", "None"):
        return None
    if text not in allowed:
        raise ParameterError(f"{name}={value!r}: allowed {', '.join(allowed)}{' or None' if optional else ''}")
    return text


def _seed(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ParameterError(f"seed={value!r}: expected a non-negative integer such as 0 (papermill: -p seed 0)")


def _folder(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise ParameterError(f"{name}={value!r}: expected a folder path (text) or None")


def check_parameters(profile: object, data_root: object, results_dir: object, seed: object, device: object,
                     executor: object) -> Parameters:
    """The parameters coerced (`seed="0"` -> 0, `"None"` -> None); a `ParameterError` names every bad one."""
    checks = {"profile": lambda: _choice("profile", profile, tuple(PROFILES)),
              "data_root": lambda: _folder("data_root", data_root),
              "results_dir": lambda: _folder("results_dir", results_dir), "seed": lambda: _seed(seed),
              "device": lambda: _choice("device", device, DEVICES),
              "executor": lambda: _choice("executor", executor, EXECUTORS, optional=True)}
    values, errors = {}, []
    for name, check in checks.items():
        try:
            values[name] = check()
        except ParameterError as err:
            errors.append(f"  {err}")
    if errors:
        raise ParameterError("bad notebook parameters (set them with papermill -p NAME VALUE or the notebook's "
                             "parameters cell):\n" + "\n".join(errors))
    return Parameters(**values)
