"""Notebooks 04 and 03 like for like with the course report (issue 23): the course's MNIST search with its protocol,
the full-data ranking against twice its epochs, the search's cost, and the course's ConvNet -> LeNet rows."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

import utils.full_training as full_training
import utils.nas as nas
from utils import interpretation, plots
from utils.comparison import COURSE_NUMBERS, RUN_HEADLINE, course_vs_run
from utils.cross_architecture import convnet_note, transfer_table
from utils.distill import METHODS
from utils.dry_run import profile_units
from utils.notebook import start
from utils.profiles import PROFILES, CrossArchSettings, TransferGrid
from utils.report import protocol_card
from utils.results import ResultWriter, read_table
from utils.synthetic import SyntheticSet, synthetic_path

REPORTED = ("cpu", "paper")


@pytest.mark.parametrize("profile", REPORTED)
def test_the_course_search_runs_in_every_reported_profile_on_a_set_its_study_distils(profile):
    settings = PROFILES[profile]
    course = [s for s in settings.nas.searches if s.course]
    assert len(course) == 1 and len(settings.nas.searches) >= 2, "the course's search and the extension"
    search = course[0]
    assert (search.dataset, search.candidates) == ("MNIST", ("ConvNetD1", "ConvNetD2", "ConvNetD4"))
    assert (search.method, search.ipc, search.init) == ("gm", 10, "real")
    assert (search.distilled_epochs, search.distilled_schedule) == (20, "cosine"), "the course's protocol"
    assert search.full_seeds >= 2 and search.longer_seeds >= 1
    study = settings.study
    assert "MNIST" in study.datasets and 10 in study.ipcs and "real" in study.inits and "dsa" in study.variants
    assert settings.method_config("gm", "MNIST", 10) is not None   # 02 distils the set the search needs
    assert len({s.name for s in settings.nas.searches}) == len(settings.nas.searches), "one table name per search"


def _save_set(root, profile: str, method: str, data, ipc: int, init: str, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    classes = data.num_classes
    images = torch.randn(classes * ipc, data.channels, *data.im_size, generator=g)
    labels = torch.arange(classes).repeat_interleave(ipc)
    SyntheticSet(images, labels, data.name, data.mean, data.std,
                 config={"profile": profile, "wall_seconds": 5.0}).save(
        synthetic_path(root, method, data.name, ipc, init))


def test_a_search_ranks_at_twice_the_epochs_reuses_its_units_and_reports_its_cost(tmp_cache, tmp_path, data_root,
                                                                                  monkeypatch):
    run = start("04_nas", "smoke", str(data_root), str(tmp_path / "results"), 0, "cpu")
    run.profile = replace(run.profile, evaluation=replace(run.profile.evaluation, test_images=50))
    search = replace(next(s for s in run.profile.nas.searches if s.course), full_train_images=20)
    data = run.load("MNIST")
    _save_set(run.writer.root, "smoke", "gm", data, search.ipc, search.init)
    table, summary = nas.search(run, search)
    assert table["candidate"].tolist() == ["ConvNetD1", "ConvNetD2", "ConvNetD4"]
    assert table["depth"].tolist() == [1, 2, 4] and set(table["width"]) == {128}
    # >= 0: 20 images can take under the table's 0.1 s
    assert table[nas.LONGER].between(0, 100).all() and (table["full-data time, 2x epochs (s)"] >= 0).all()
    assert summary["dataset"] == "MNIST" and summary["full-data train images"] == 20
    assert summary["full-data epochs"] == search.full_epochs and summary["training set images"] == len(data.x_train)
    assert -1 <= summary["stability spearman (full data, budget vs 2x epochs)"] <= 1
    assert summary["course report: best on full data"] == "ConvNetD4"
    assert summary["course report: spearman"] == pytest.approx(1.0)
    assert summary["distillation time of the set (s)"] == 5.0
    assert summary["search time distilled (s)"] == pytest.approx(table["distilled time (s)"].sum(), abs=0.2)
    # every unit is in the ledger now: a second search trains nothing
    monkeypatch.setattr(full_training, "train_full_uncached", None)
    monkeypatch.setattr(nas, "train_full_uncached", None)
    again, _ = nas.search(run, search)
    assert again[nas.FULL].tolist() == table[nas.FULL].tolist()
    text = interpretation.nas_agreement(summary)
    assert text.startswith("MNIST: ") and "instead of" in text and "The course report picked ConvNetD4 on both" in text
    assert "Budget cut against the course report" in text and "20 training images" in text


def test_a_search_without_its_distilled_set_names_the_notebook_to_run(tmp_cache, tmp_path, data_root):
    run = start("04_nas", "smoke", str(data_root), str(tmp_path / "results"), 0, "cpu")
    with pytest.raises(FileNotFoundError, match="02_gradient_matching"):
        nas.search(run, run.profile.nas.searches[0])


def _summary(**changes) -> dict:
    base = {"dataset": "CIFAR10", "spearman": 0.5, "kendall": 0.4, "best on full data": "ConvNetD2W128",
            "best on distilled data": "ConvNetD4W128", interpretation.CEILING: 0.9,
            "stability spearman (full data, budget vs 2x epochs)": 0.3,
            "stability kendall (full data, budget vs 2x epochs)": 0.2,
            "spearman (distilled vs full data at 2x epochs)": 0.7, "full-data epochs": 2,
            "full-data train images": 10000, "training set images": 50000, "distilled epochs": 300,
            "search time full data (s)": 270.0, "search time distilled (s)": 287.0,
            "distillation time of the set (s)": 120.0}
    return {**base, **changes}


def test_the_summary_says_plainly_when_the_distilled_search_saved_no_time_and_when_the_ranking_moves():
    text = interpretation.nas_agreement(_summary())
    assert "did not cost less than the search on full data: 287.0 s against 270.0 s" in text
    assert "Trained for 4 epochs instead of 2" in text and "ρ = 0.30" in text and "not stable" in text
    assert "course report" not in text, "only the course's search is set beside the course's"
    cheap = interpretation.nas_agreement(_summary(**{"search time distilled (s)": 27.0,
                                                      "stability spearman (full data, budget vs 2x epochs)": 0.9}))
    assert "10.0 times less time" in cheap and "it is stable" in cheap
    assert "With the 120.0 s the set took to distil, 147.0 s: still less than on full data." in cheap


@pytest.mark.parametrize("profile", REPORTED)
def test_every_course_cross_architecture_row_is_trained_on_lenet(profile):
    settings = PROFILES[profile].cross_arch
    rows = [c for c in COURSE_NUMBERS if c.notebook == "03"]
    assert len(rows) == 4
    labels = {METHODS[m].label: m for m in METHODS}
    for course in rows:
        method_label, dataset, ipc, init = dict(course.match)["training set"].split(", ")
        ipc, init = int(ipc.removeprefix("ipc ")), init.removesuffix(" init")
        assert {"ConvNet", "LeNet"} <= set(settings.architectures_for(labels[method_label], dataset, ipc, init))
        assert {"ConvNet", "LeNet"} <= set(settings.architectures_for(None, dataset, ipc))
        assert course.column == "LeNet (%)"


def test_cpu_transfer_grid_adds_the_course_rows_without_the_wide_grid_for_them():
    settings = PROFILES["cpu"].cross_arch
    assert settings.architectures_for("gm", "MNIST", 10, "noise") == ("ConvNet", "LeNet")
    assert settings.architectures_for("dm", "MNIST", 10, "real") == ()
    assert len(settings.architectures_for("dm", "CIFAR10", 10, "real")) == 6
    units = {u.what for u in profile_units(PROFILES["cpu"]) if u.notebook == "03"}
    assert "evaluate 3 sets on LeNet MNIST ipc10 (300 epochs)" in units
    assert "evaluate 5 sets on LeNet CIFAR10 ipc10 (300 epochs)" in units
    assert "evaluate 4 sets on MLP CIFAR10 ipc10 (300 epochs)" in units
    nas_units = {u.what for u in profile_units(PROFILES["cpu"]) if u.notebook == "04"}
    assert {"NAS MNIST ConvNetD4 full data (2 epochs)", "NAS MNIST ConvNetD4 full data (4 epochs)",
            "evaluate NAS MNIST ConvNetD4 distilled (20 epochs)"} <= nas_units


def test_the_convnet_column_says_why_it_differs_from_the_study_notebooks(tmp_path, data_root):
    run = start("03_cross_architecture", "smoke", str(data_root), str(tmp_path), 0, "cpu")
    run.profile = PROFILES["cpu"]
    note = convnet_note(run)
    assert "here 3 networks per set train 300 epochs without DSA, tested on 1,000 test images" in note
    assert "there 5 networks per set train 300 epochs with DSA, tested on the whole test set" in note
    run.profile = PROFILES["paper"]
    assert "uses the protocol of notebook 02's accuracy without DSA" in convnet_note(run)


def test_a_set_trains_the_architectures_of_every_grid_that_selects_it(tmp_cache, tmp_path, data_root):
    run = start("03_cross_architecture", "smoke", str(data_root), str(tmp_path / "results"), 0, "cpu")
    run.profile = replace(run.profile, cross_arch=CrossArchSettings(
        grids=(TransferGrid(("ConvNet", "LeNet"), datasets=("MNIST",), ipcs=(1,), inits=("real",), methods=("gm",)),
               TransferGrid(("MLP",), datasets=("MNIST",), ipcs=(1,), inits=("noise",))),
        epochs=1, n_models=1, test_images=50))
    data = run.load("MNIST")
    for method, init in (("gm", "real"), ("gm", "noise"), ("dm", "real")):
        _save_set(run.writer.root, "smoke", method, data, 1, init)
    table = transfer_table(run).set_index("training set")
    assert list(table.index) == ["random real, MNIST, ipc 1", "Gradient matching + DSA, MNIST, ipc 1, noise init",
                                 "Gradient matching + DSA, MNIST, ipc 1, real init"]
    real, noise = (table.loc[f"Gradient matching + DSA, MNIST, ipc 1, {i} init"] for i in ("real", "noise"))
    assert real[["ConvNet (%)", "LeNet (%)"]].notna().all() and math.isnan(real["MLP (%)"])
    assert noise[["ConvNet (%)", "LeNet (%)"]].isna().all() and not math.isnan(noise["MLP (%)"])
    assert table.loc["random real, MNIST, ipc 1"].drop([c for c in table.columns if "std" in c]).notna().all()


def test_the_course_table_finds_this_runs_nas_and_lenet_numbers(tmp_path):
    writer = ResultWriter(tmp_path, notebook="04_nas", profile="cpu", seed=0, device="cpu")
    writer.table(pd.DataFrame({"candidate": ["ConvNetD1", "ConvNetD2", "ConvNetD4"],
                               "full-data accuracy (%)": [97.0, 97.5, 98.0],
                               "distilled accuracy (%)": [80.0, 85.0, 90.0],
                               "distilled accuracy std (%)": [1.0, 1.0, 1.0]}), "04_nas_MNIST_candidates")
    writer.table(pd.DataFrame({"training set": ["Gradient matching + DSA, MNIST, ipc 10, real init"],
                               "LeNet (%)": [80.5], "LeNet std (%)": [0.5]}), "03_cross_architecture")
    nas_rows = course_vs_run(tmp_path, "04").set_index("what")
    assert nas_rows.loc["MNIST NAS, ConvNetD4 trained on full data", ["course report", RUN_HEADLINE]].tolist() == \
        [99.26, 98.0]
    assert nas_rows.loc["MNIST NAS, ConvNetD2 trained on the distilled set", RUN_HEADLINE] == 85.0
    lenet = course_vs_run(tmp_path, "03").set_index("what")
    assert lenet.loc["MNIST, gradient-matching set (real init) trained on LeNet", RUN_HEADLINE] == 80.5
    assert read_table(tmp_path / "tables" / "04_nas_MNIST_candidates.csv")["candidate"].tolist()[-1] == "ConvNetD4"


def test_the_report_protocol_cards_name_each_search_and_grid():
    card = protocol_card("cpu", "04")
    assert "2 epochs on 10,000 training images" in card["MNIST search (the course report's)"]
    assert "20 epochs (cosine schedule)" in card["MNIST search (the course report's)"]
    assert "ConvNetD4W128" in card["CIFAR10 search"]
    sets = protocol_card("cpu", "03")["sets"]
    assert sets.startswith("ConvNet, LeNet: Gradient matching + DSA sets of MNIST, CIFAR10 at ipc 10 from real, noise")


@pytest.mark.parametrize("change, named", [({"longer_seeds": 0}, "longer_seeds"), ({"candidates": ()}, "candidates"),
                                           ({"distilled_schedule": "linear"}, "distilled_schedule")])
def test_a_search_setting_out_of_range_is_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        replace(PROFILES["cpu"].nas.searches[0], **change)


def test_a_transfer_panel_shows_only_the_architectures_its_sets_trained_on():
    table = pd.DataFrame({"training set": ["random real, CIFAR10, ipc 10", "random real, MNIST, ipc 10"],
                          "ConvNet (%)": [30.0, 80.0], "LeNet (%)": [25.0, 70.0], "MLP (%)": [20.0, float("nan")]})
    fig = plots.transfer_bars(table, "training set", "Transfer", note="why the ConvNet column differs")
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes]
    assert ticks == [["ConvNet", "LeNet", "MLP"], ["ConvNet", "LeNet"]]
    assert any(t.get_text() == "why the ConvNet column differs" for t in fig.texts)
