"""The README's "Barycenters" section: its command and its Python example print what it shows."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import otcli
from conftest import otdist

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.usefixtures("single_thread")


def _section() -> str:
    start = README.index("## Barycenters")
    return README[start : README.index("\n## ", start + 1)]


def _blocks(text: str) -> list[str]:
    """The fenced code blocks of ``text``, in order (bash, python or plain)."""
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def test_the_command_prints_what_the_readme_shows(capfd, monkeypatch, tmp_path):
    section = _section()
    command, shown = _blocks(section)[:2]
    args = shlex.split(command.replace("\\\n", " "))
    assert args[:2] == ["otdist", "barycenter"]
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    code, out, err = otdist(capfd, *args[1:])
    assert code == 0, err
    printed, doc = out.splitlines(), shown.splitlines()
    assert [k.split()[0] for k in printed] == [k.split()[0] for k in doc]
    for got, want in zip(printed, doc, strict=True):
        if not got.startswith("device"):  # the time varies
            assert got == want
    # The progress line the text quotes is the last one printed on stderr.
    quoted = re.search(r"\(`(iteration \d+: S_ε [^`]+)`", section)
    assert quoted is not None and err.splitlines()[-1] == quoted.group(1)
    # bary.csv holds the 15 points, columns x, y: a cloud otdist reads back.
    back = otcli.read_cloud("bary.csv")
    assert back.points.shape == (15, 2) and back.columns == ("x", "y")
    assert np.isfinite(back.points).all()


def test_the_python_example_prints_what_the_readme_shows(monkeypatch):
    code, shown = _blocks(_section())[2:4]
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().split() == shown.split()
