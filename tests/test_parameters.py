"""Notebook parameters as papermill may pass them (text from YAML or `-r`) are coerced, and bad ones are named one
line each before anything runs (issue 24, point 9)."""

from __future__ import annotations

import pytest

from utils.notebook import start
from utils.parameters import ParameterError, check_parameters


def test_text_parameters_are_coerced(tmp_path):
    run = start("01_baseline", " smoke ", "None", str(tmp_path), "0", "cpu", "")
    assert run.seed == 0 and type(run.seed) is int and run.data_root is None
    assert run.writer.root == tmp_path and run.executor.name == "local"
    assert check_parameters("cpu", tmp_path, None, 3.0, "auto", "ray").seed == 3


def test_every_bad_parameter_is_named_with_what_it_allows():
    with pytest.raises(ParameterError) as err:
        check_parameters("fast", 5, None, "zero", "gpu", "spark")
    lines = str(err.value).splitlines()
    assert len(lines) == 6, lines
    for expected in ("profile='fast': allowed smoke, cpu, paper", "data_root=5: expected a folder path",
                     "seed='zero': expected a non-negative integer", "device='gpu': allowed auto, cpu, cuda",
                     "executor='spark': allowed local, ray or None"):
        assert any(expected in line for line in lines), expected


@pytest.mark.parametrize("seed", [-1, True, 1.5, "1.5", None])
def test_seeds_that_are_not_non_negative_integers_are_refused(seed):
    with pytest.raises(ParameterError, match="seed="):
        check_parameters("smoke", None, None, seed, "cpu", None)
