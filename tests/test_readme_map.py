"""The README's "Moving points" section runs as written and prints what it shows."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import otdist

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Moving points: transport maps")
    return text[start : text.index("\n## ", start + 1)]


def test_the_library_example_prints_what_the_readme_shows():
    section = _section()
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    shown = re.search(r"prints `(.*?)`", section.split("```python", 1)[1]).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().strip() == shown


def _same_summary(printed: list[str], shown: list[str]) -> None:
    """The lines the README shows, as printed: the same words and pixel counts, ε and cost to
    6 digits, iterations to 10% (the solve's threads change the last digits of a 4,000-point
    solve: 0.091693 / 0.09169294 and marginal error 2.5e-6 / 1.6e-6 on one and two threads);
    times and the device line are the machine's."""
    assert [k.split()[0] for k in printed] == [k.split()[0] for k in shown]
    number = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")
    for got, doc in zip(printed, shown, strict=True):
        key = got.split()[0]
        if key in ("moved", "saved"):
            assert got == doc
        elif key in ("map", "cost"):
            assert number.sub("#", got) == number.sub("#", doc)
            pairs = zip(number.findall(got), number.findall(doc), strict=True)
            assert all(float(g) == pytest.approx(float(d), rel=1e-6) for g, d in pairs)
        elif key == "solve":
            assert " converged (" in got
            iterations = int(got.split()[1])
            assert iterations == pytest.approx(int(doc.split()[1]), rel=0.1)


@pytest.mark.slow
def test_the_colour_transfer_runs_as_written_and_prints_what_the_readme_shows(
    capfd, monkeypatch, tmp_path
):
    pytest.importorskip("skimage")
    section = _section()
    block = section.split("**Colour transfer.**", 1)[1]
    commands = re.findall(r"```bash\n(.*?)```", block, re.S)[0].replace("\\\n", " ")
    shown = re.findall(r"```\n(moved .*?)```", block, re.S)[0].splitlines()
    scripts = tmp_path / "docs" / "pictures"
    scripts.mkdir(parents=True)  # a copy: the README's picture command writes beside it
    shutil.copy(ROOT / "docs" / "pictures" / "colour_transfer.py", scripts)
    monkeypatch.chdir(tmp_path)
    printed = []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for line in commands.strip().splitlines():
        words = shlex.split(line)
        if words[0] == "python":
            run = subprocess.run([sys.executable, *words[1:]], env=env, capture_output=True,
                                 text=True)  # fmt: skip
            assert run.returncode == 0, run.stderr
        else:
            assert words[0] == "otdist"
            code, out, err = otdist(capfd, *words[1:])
            assert (code, err) == (0, ""), err
            printed.append(out.splitlines())
    first, second = printed
    _same_summary(first, shown)
    assert second[0] == (
        "moved   240,000 points of coffee.npy B → A, written to coffee_as_astronaut.npy"
    )
    recoloured = np.load("astronaut_as_coffee.npy", allow_pickle=False)
    assert recoloured.shape == (262_144, 3)
    # Every pixel lands among the coffee's colours: inside their bounding box.
    coffee = np.load("coffee.npy", allow_pickle=False)
    assert np.all(recoloured >= coffee.min(0) - 1e-9) and np.all(recoloured <= coffee.max(0) + 1e-9)
    assert (tmp_path / "colour_transfer.png").stat().st_size > 0
