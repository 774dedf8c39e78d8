"""Notebook prose states only what the profiles it reports run (issue 23): a statement in a markdown cell that names
a setting (noise initialisation, evaluation without DSA, a set size) fails when the `cpu` or `paper` profile does
not run it. Questions (sentences ending in '?') are exempt: the next generated line answers them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import nbformat
import pytest

from utils.paths import NOTEBOOKS_DIR
from utils.profiles import PROFILES, Profile

REPORTED = ("cpu", "paper")   # the profiles whose results a report shows; smoke only checks the plumbing


def runs(profile: Profile, number: str) -> dict[str, set]:
    """What notebook `number` runs under `profile`: initialisations, evaluation variants, images per class."""
    study, mhist, cross, nas = profile.study, profile.mhist, profile.cross_arch, profile.nas
    also = set(profile.evaluation.also)   # the studies' extra protocols (02, 05, 06, 07)
    every = {"inits": set(study.inits) | set(mhist.inits), "variants": set(study.variants) | {"dsa"} | also,
             "ipcs": set(study.ipcs) | set(mhist.ipcs)}
    return {"02": {"inits": set(study.inits), "variants": set(study.variants) | also, "ipcs": set(study.ipcs)},
            "03": {"inits": set(cross.union("inits")), "variants": {"plain"}, "ipcs": set(cross.union("ipcs"))},
            "04": {"inits": {s.init for s in nas.searches}, "variants": {"plain"},
                   "ipcs": {s.ipc for s in nas.searches}},
            "05": {"inits": set(mhist.inits), "variants": {"dsa"} | also, "ipcs": set(mhist.ipcs)},
            "06": {"inits": set(study.inits), "variants": {"dsa"} | also, "ipcs": set(study.ipcs)},
            "07": {"inits": set(study.inits), "variants": {"dsa"} | also, "ipcs": set(study.ipcs)}}.get(number, every)


@dataclass(frozen=True)
class Claim:
    """A statement pattern and whether a profile's settings (`runs`) bear it out for one match."""

    name: str
    pattern: str
    holds: Callable[[dict[str, set], re.Match], bool]


CLAIMS = (
    Claim("noise initialisation", r"\b(?:from|and|or) (?:Gaussian )?noise\b|\bnoise[- ]init",
          lambda run, _: "noise" in run["inits"]),
    Claim("evaluation without DSA", r"\bwith and without DSA\b|\bwithout DSA augmentation\b",
          lambda run, _: "plain" in run["variants"]),
    Claim("evaluation under the course report's protocol", r"\bcourse protocol\b|\bway the course report trained\b"
          r"|\bthe course report trained its evaluation\b",
          lambda run, _: "course" in run["variants"]),
    Claim("set sizes", r"\bipc (\d+)(?:,? and (\d+))?\b(?! *=)",
          lambda run, m: all(int(g) in run["ipcs"] for g in m.groups() if g)),
)


def statements(path) -> list[str]:
    """The sentences of a notebook's markdown cells that are not questions."""
    text = " ".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    return [s.strip() for s in re.split(r"(?<=[.?!])\s+", " ".join(text.split())) if s.strip() and
            not s.strip().endswith("?")]


def broken_claims(path, profile: Profile) -> list[str]:
    """Each statement of a notebook that claims a setting `profile` does not run, with the claim's name."""
    run = runs(profile, path.name[:2])
    return [f"{claim.name}: {sentence!r}" for sentence in statements(path) for claim in CLAIMS
            for match in re.finditer(claim.pattern, sentence, flags=re.IGNORECASE) if not claim.holds(run, match)]


@pytest.mark.parametrize("profile", REPORTED)
@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name[:2])
def test_notebook_markdown_claims_only_what_the_profile_runs(path, profile):
    assert not broken_claims(path, PROFILES[profile])


def markdown_notebook(path: Path, text: str) -> Path:
    """A notebook at `path` holding one markdown cell of `text`."""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)]), path)
    return path


def test_a_claim_the_profile_does_not_run_is_found(tmp_path):
    path = markdown_notebook(tmp_path / "05_mhist.ipynb", "Every method distils ipc 10 and 50 sets from real and "
                             "from noise initialisation. Does noise init catch up?")
    found = broken_claims(path, PROFILES["cpu"])   # cpu: MHIST from real images only, ipc 10 and 50
    assert len(found) == 1 and found[0].startswith("noise initialisation: 'Every method distils")
    assert broken_claims(path, PROFILES["paper"]) == []


def test_a_course_protocol_claim_needs_the_profile_to_evaluate_that_way(tmp_path):
    path = markdown_notebook(tmp_path / "07_distribution_matching.ipynb", "Every set is also evaluated the way the "
                             "course report trained its evaluation networks.")
    assert broken_claims(path, PROFILES["cpu"]) == []
    without = replace(PROFILES["cpu"], evaluation=replace(PROFILES["cpu"].evaluation, also=()))
    assert [claim.split(":")[0] for claim in broken_claims(path, without)] == [
        "evaluation under the course report's protocol"]
