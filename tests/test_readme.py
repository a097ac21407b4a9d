"""The README's quick start and library repr show what the code prints (they had drifted:
20 and 21 iterations where the solve takes 30)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import otcli
from conftest import otdist

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.usefixtures("single_thread")


def test_quick_start_output_is_what_otdist_prints(capfd, monkeypatch):
    monkeypatch.chdir(ROOT)
    block = README.split("```\ncost        ", 1)[1].split("```", 1)[0]
    shown = ("cost        " + block).splitlines()
    code, out, err = otdist(capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv",
                            "--eps", "0.1")  # fmt: skip
    assert code == 0, err
    printed = out.splitlines()
    assert [k.split()[0] for k in printed] == [k.split()[0] for k in shown]
    for got, doc in zip(printed, shown, strict=True):
        if not got.startswith("device"):  # the time varies
            assert got == doc


def test_library_repr_in_the_readme_is_what_solve_prints():
    x = otcli.read_cloud(str(ROOT / "sample_data/moons_a.csv"))
    y = otcli.read_cloud(str(ROOT / "sample_data/moons_b.csv"))
    got = repr(otcli.solve(x, y, eps=0.1))
    doc = re.search(r"`(SinkhornResult\(n=15.*?), \.\.\.\)`", README, re.DOTALL)
    assert doc is not None
    assert got.startswith(" ".join(doc.group(1).split()))
