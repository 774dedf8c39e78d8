"""The dry run: every unit of a profile is listed and checked without running it; --measure projects cost."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

import utils.dry_run as dry_run
from utils.distill.trajectory_matching import TrajectoryMatchingConfig
from utils.pipeline import main as pipeline_main
from utils.profiles import CPU as CPU_PROFILE
from utils.profiles import PAPER, SMOKE, MhistSettings

CPU = dry_run.torch.device("cpu")


def test_every_paper_unit_passes_the_configuration_check():
    table = dry_run.dry_run(PAPER, CPU)
    assert (table["check"] == "ok").all(), table[table["check"] != "ok"].to_string()
    units = set(table["unit"])
    for method in ("gm", "dm", "mtt"):
        for dataset in ("MNIST", "CIFAR10"):
            for ipc in (1, 10, 50):
                for init in ("real", "noise"):
                    assert f"{method} {dataset} ipc{ipc} {init}" in units
        assert f"{method} MHIST ipc50 noise" in units
    assert "mtt experts CIFAR10 (100 x 50 epochs)" in units
    assert set(table["notebook"]) == {"01", "02", "03", "04", "05", "06", "07"}
    assert (table["unit"] == "mtt experts MHIST (100 x 50 epochs)").sum() == 1, "one buffer per dataset"


def test_evaluations_are_listed_as_the_studies_run_them():
    """cpu profile: each set evaluated once with DSA and once the course report's way, plus one curve network at
    iteration 0 and one halfway; the random-real floor (6 networks over 3 subsets) once, in 02 (06 and 07 find it
    cached)."""
    table = dry_run.dry_run(CPU_PROFILE, CPU, notebooks=("02", "07"))
    assert table["unit"].is_unique
    runs = table.set_index("unit")["runs"]
    assert runs["evaluate random real CIFAR10 ipc10 with DSA (300 epochs)"] == 6
    assert runs["evaluate random real CIFAR10 ipc10, course protocol (20 epochs)"] == 6
    assert runs["evaluate dm CIFAR10 ipc10 noise with DSA (300 epochs)"] == 5
    assert runs["evaluate dm CIFAR10 ipc10 noise, course protocol (20 epochs)"] == 5
    assert runs["evaluate curve dm CIFAR10 ipc10 noise with DSA (300 epochs)"] == 2
    evaluations = table[table["unit"].str.startswith("evaluate")]
    assert evaluations["unit"].str.contains("with DSA|course protocol").all(), \
        "cpu: 02 and 07 evaluate with DSA and the course's way only"
    assert not table[table["notebook"] == "07"]["unit"].str.contains("random real").any()
    assert set(dry_run.dry_run(CPU_PROFILE, CPU, match="^dm CIFAR10")["unit"]) == {
        "dm CIFAR10 ipc10 real", "dm CIFAR10 ipc10 noise"}


def test_a_configuration_the_real_run_would_reject_is_reported():
    """The ZCA of 128 px MHIST images (49,152 values) is what crashed notebook 05 after an hour."""
    zca = {ipc: TrajectoryMatchingConfig.paper_settings(10, zca=True) for ipc in (10, 50)}
    broken = replace(PAPER, mhist=replace(PAPER.mhist, methods={**PAPER.mhist.methods, "mtt": zca}))
    table = dry_run.dry_run(broken, CPU, notebooks=("05",))
    failed = table[table["check"] != "ok"]
    assert set(failed["unit"]) == {f"mtt MHIST ipc{ipc} {init}" for ipc in (10, 50) for init in ("real", "noise")}
    assert failed["check"].str.contains("49152 values").all()
    assert isinstance(PAPER.mhist, MhistSettings)


def test_pipeline_dry_run_exits_non_zero_on_a_failing_unit(monkeypatch, capsys):
    assert pipeline_main(["--profile", "paper", "--dry-run", "--only", "01"]) == 0
    monkeypatch.setattr(dry_run, "check", lambda unit: (_ for _ in ()).throw(ValueError("no such network")))
    assert pipeline_main(["--profile", "paper", "--dry-run", "--only", "01"]) == 1
    assert "no such network" in capsys.readouterr().err


def test_measure_projects_time_and_flags_units_that_do_not_fit(monkeypatch):
    table = dry_run.dry_run(SMOKE, CPU, measure=True, notebooks=("07",))
    assert (table["check"] == "ok").all() and (table["seconds per step"] > 0).all()
    assert (table["projected hours"] >= 0).all() and (table["peak memory (MiB)"] >= 0).all()
    monkeypatch.setattr(dry_run, "device_memory_mib", lambda device: -1.0)
    tight = dry_run.dry_run(SMOKE, CPU, measure=True, notebooks=("07",))
    assert tight["check"].str.startswith("FAILS: needs").all()


def test_mtt_memory_is_extrapolated_from_one_and_two_student_steps(monkeypatch):
    calls = []

    def fake_measured(step, device):
        calls.append(step.__self__.config.syn_steps)
        return {1: (1.0, 100.0), 2: (1.5, 160.0)}[step.__self__.config.syn_steps]

    monkeypatch.setattr(dry_run, "_measured", fake_measured)
    unit = next(u for u in dry_run.profile_units(SMOKE) if u.method == "mtt")
    unit = replace(unit, config=replace(unit.config, syn_steps=30))
    first, seconds, peak = dry_run._distill_step(unit, CPU, "fp32")
    assert calls == [1, 2] and first == seconds == pytest.approx(1.0 + 0.5 * 29)
    assert peak == pytest.approx(100 + 60 * 29)
    monkeypatch.setattr(dry_run, "_measured", lambda step, device: (1.0, 100.0 - 4 * step.__self__.config.syn_steps))
    assert dry_run._distill_step(unit, CPU, "fp32")[2] == pytest.approx(96.0), "noise never projects below 1 step"


def test_a_training_unit_splits_the_runs_fixed_cost_from_its_steps(monkeypatch):
    """A run of 1 step costs 1.0 s and one of 4 steps 1.6 s: 0.2 s a step, so 300 steps cost 1.0 + 299 x 0.2."""
    monkeypatch.setattr(dry_run, "_measured", lambda step, device, warm_up=True: (1.0 if warm_up else 1.6, 50.0))
    unit = next(u for u in dry_run.profile_units(SMOKE) if u.what.startswith("evaluate") and u.dsa)
    first, seconds, _ = dry_run._train_step(unit, CPU, "fp32")
    assert (first, seconds) == pytest.approx((1.0, 0.6 / dry_run.EXTRA_STEPS))
    unit = replace(unit, steps=300, runs=2)
    monkeypatch.setattr(dry_run, "profile_units", lambda profile: [unit])
    monkeypatch.setattr(dry_run, "_train_step", lambda unit, device, precision: (1.0, 0.2, 50.0))
    hours = dry_run.dry_run(SMOKE, CPU, measure=True)["projected hours"].item()
    assert hours == pytest.approx(round(2 * (1.0 + 299 * 0.2) / 3600, 3))


def test_a_step_is_timed_once_it_has_stopped_compiling():
    calls = []

    def step():   # slow on its first three calls (compiling, then recompiling for a new shape), fast afterwards
        calls.append(1)
        time.sleep(0.3 if len(calls) <= 3 else 0.02)

    seconds, _ = dry_run._measured(step, CPU)
    assert seconds < 0.1
    assert len(calls) <= 1 + dry_run.MAX_TIMED_CALLS
