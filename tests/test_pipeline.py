"""End to end: every notebook runs under papermill in the smoke profile and writes files that parse; the
committed results/ folder is never touched; the pipeline and profiles reject bad input."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import nbformat
import pandas as pd
import pytest
import torch

from utility import hardware_name
from utils import pipeline
from utils.distill import METHODS, DistributionMatchingConfig, find_synthetic
from utils.paths import RESULTS_DIR
from utils.profiles import PROFILES, SMOKE, get_profile
from utils.results import read_metadata, read_sidecar, read_table
from utils.synthetic import SyntheticSet

EXPECTED_TABLES = ["01_baseline", "02_gradient_matching", "02_training_cost", "03_cross_architecture",
                   "04_nas_MNIST_candidates", "04_nas_CIFAR10_candidates", "04_nas_rank_agreement", "05_mhist",
                   "06_expert_buffers", "06_trajectory_matching", "06_vs_gradient_matching", "07_distribution_matching",
                   "07_vs_gradient_matching", "08_comparison", "08_published"]
EXPECTED_FIGURES = ["01_baseline_learning_curves", "02_gradient_matching_CIFAR10_loss", "03_cross_architecture",
                    "04_nas_MNIST_scatter", "04_nas_CIFAR10_scatter", "05_mhist_confusion_best",
                    "06_trajectory_matching_MNIST_loss", "07_distribution_matching_CIFAR10_ipc1_noise_images",
                    "08_accuracy_vs_time"]


def _snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, data_root):
    """One smoke run of the whole notebook sequence into a temporary folder, with a private cache."""
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("results")
    before = _snapshot(RESULTS_DIR) if RESULTS_DIR.exists() else []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DD_CACHE_DIR", str(cache))
        pipeline.run("smoke", results_dir=out, data_root=str(data_root))
    after = _snapshot(RESULTS_DIR) if RESULTS_DIR.exists() else []
    return out, before, after


def test_every_notebook_executes_and_is_saved(smoke_results):
    out, _, _ = smoke_results
    executed = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    assert executed == sorted(p.name for p in pipeline.notebooks())
    for path in (out / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{path.name} has error outputs"


def test_tables_parse_and_record_metadata(smoke_results):
    out, _, _ = smoke_results
    for name in EXPECTED_TABLES:
        table = read_table(out / "tables" / f"{name}.csv")
        assert len(table) > 0, name
        meta = read_metadata(out / "tables" / f"{name}.csv")
        assert meta["profile"] == "smoke" and meta["seed"] == 0 and meta["device"] == "cpu"
        assert meta["torch"] and isinstance(meta["wall_seconds_since_start"], float)
        assert meta["hardware"] == hardware_name(torch.device("cpu"))   # one description of the machine
        assert (out / "tables" / f"{name}.md").read_text().count("|") > 4
        assert "\\begin{tabular}" in (out / "tables" / f"{name}.tex").read_text()
    for path in (out / "tables").glob("*.csv"):
        assert len(pd.read_csv(path)) > 0, f"{path.name} must read with plain pd.read_csv"
    assert (out / "report.html").stat().st_size > 0 and (out / "report" / "report.tex").is_file()


def test_every_csv_loads_its_numbers_as_numbers_with_plain_pandas(smoke_results):
    out, _, _ = smoke_results
    scores = 0
    for path in sorted((out / "tables").glob("*.csv")):
        plain = pd.read_csv(path)   # no options, as a spreadsheet user would
        for column in plain.columns:
            if column.endswith("(%)") or column.endswith("(s)") or column in ("ipc", "models", "iterations"):
                assert pd.api.types.is_numeric_dtype(plain[column]), f"{path.name}: {column!r} is {plain[column].dtype}"
                scores += "accuracy" in column
            assert "±" not in plain[column].astype(str).str.cat(), f"{path.name}: {column!r} holds 'mean ± std' text"
        text = pd.read_csv(path, dtype=str)
        for column in read_sidecar(path)["integer_columns"]:
            assert not text[column].dropna().str.contains(".", regex=False).any(), f"{path.name}: {column!r} as floats"
    assert scores >= 10, "the accuracy columns of the study tables"


def test_figures_exist_as_png_and_pdf(smoke_results):
    out, _, _ = smoke_results
    for name in EXPECTED_FIGURES:
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF", name


def test_synthetic_sets_of_every_method_round_trip(smoke_results):
    out, _, _ = smoke_results
    methods = {p.name.split("_")[0] for p in find_synthetic(out)}
    assert methods == set(METHODS)
    for path in find_synthetic(out):
        synthetic = SyntheticSet.load(path)
        assert synthetic.images.dtype.is_floating_point and len(synthetic.images) == len(synthetic.labels)
        assert synthetic.config["profile"] == "smoke"
        assert (synthetic.lr is not None) == path.name.startswith("mtt_")


def test_baseline_and_comparison_content(smoke_results):
    out, _, _ = smoke_results
    baseline = read_table(out / "tables" / "01_baseline.csv")
    assert set(baseline["dataset"]) == {"MNIST", "CIFAR10"}
    macs = dict(zip(baseline["dataset"], baseline["MACs per image (M)"]))
    assert 0 < macs["MNIST"] < macs["CIFAR10"], "a 1-channel 28 px image costs less than a 3-channel 32 px one"
    summary = (out / "summary.md").read_text()
    assert "Published numbers" in summary and "08_accuracy_vs_time.png" in summary
    mhist = read_table(out / "tables" / "05_mhist.csv")
    assert {"balanced accuracy with DSA (%)", "AUC with DSA (%)"} <= set(mhist.columns)
    assert json.loads(json.dumps(read_metadata(out / "tables" / "05_mhist.csv")))["notebook"] == "05_mhist"


def test_smoke_run_never_touches_committed_results(smoke_results):
    _, before, after = smoke_results
    assert before == after


def test_pipeline_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="allowed: smoke, cpu, paper"):
        pipeline.run("fast", results_dir=tmp_path)
    with pytest.raises(ValueError, match="--only names unknown notebook numbers"):
        pipeline.notebooks(["99"])
    with pytest.raises(ValueError, match="never write to the committed results"):
        pipeline.run("smoke", results_dir=RESULTS_DIR)
    with pytest.raises(ValueError, match="allowed: smoke, cpu, paper"):
        get_profile("gpu")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_configures_every_method_for_its_study(name):
    profile = get_profile(name)
    for method in METHODS:
        for dataset in profile.study.datasets:
            for ipc, init in itertools.product(profile.study.ipcs, profile.study.inits):
                config = profile.method_config(method, dataset, ipc, init)
                if method == "gm":
                    config.loops_for(ipc)
        for ipc, init in itertools.product(profile.mhist.ipcs, profile.mhist.inits):
            config = profile.mhist.method_config(method, ipc, init)
            assert config.architecture == f"ConvNetD{profile.mhist.depth}W{profile.mhist.width}"
            if method == "gm":
                config.loops_for(ipc)
    with pytest.raises(ValueError, match="Unknown method"):
        profile.method_config("kip", "CIFAR10", 10)


def test_a_method_budget_can_differ_per_dataset():
    per_dataset = replace(SMOKE, methods={**SMOKE.methods, "dm": {
        "MNIST": DistributionMatchingConfig(iterations=3), "CIFAR10": {1: DistributionMatchingConfig(iterations=7)}}})
    assert per_dataset.method_config("dm", "MNIST", 1).iterations == 3
    assert per_dataset.method_config("dm", "CIFAR10", 1).iterations == 7
    with pytest.raises(ValueError, match="dataset='SVHN'; this profile has CIFAR10, MNIST"):
        per_dataset.method_config("dm", "SVHN", 1)
    with pytest.raises(ValueError, match="No dm configuration for ipc=10"):
        per_dataset.method_config("dm", "CIFAR10", 10)


def test_a_method_budget_can_differ_per_init_below_its_dataset():
    per_init = replace(SMOKE, methods={**SMOKE.methods, "dm": {
        "MNIST": {"real": DistributionMatchingConfig(iterations=3), "noise": {1: DistributionMatchingConfig(
            iterations=5)}}, "CIFAR10": DistributionMatchingConfig(iterations=7)}})
    assert per_init.method_config("dm", "MNIST", 1, "real").iterations == 3
    assert per_init.method_config("dm", "MNIST", 1, "noise").iterations == 5
    assert per_init.method_config("dm", "CIFAR10", 1, "noise").iterations == 7, "init only where it is keyed"
    assert per_init.method_config("dm", "CIFAR10", 1).iterations == 7
    with pytest.raises(ValueError, match="No dm configuration for init=None; this profile has noise, real"):
        per_init.method_config("dm", "MNIST", 1)
