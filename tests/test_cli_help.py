"""What a shell user meets first: ``-V``, shell completion, ``--help`` (no ``<bool>``, real
examples that run as written, required options marked) and refused option pairs.

The examples are run from each command's own --help text and their numbers checked against
the values sample_data/README.md documents (POT's log-domain Sinkhorn, float64).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import otcli
from conftest import otdist
from otcli.costs import COST_NAMES

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
VERSION_LINE = f"otdist (otcli) {otcli.__version__}\n"


def help_text(capfd: pytest.CaptureFixture[str], *command: str) -> str:
    code, out, err = otdist(capfd, *command, "--help")
    assert (code, err) == (0, "")
    return ANSI.sub("", out)


def examples_of(text: str) -> list[list[str]]:
    """The ``$ otdist ...`` commands at the end of a --help text, as argument lists
    (``\\`` continues a command on the next line, as in a shell)."""
    lines = [line.strip() for line in text.split("Examples", 1)[1].splitlines()]
    commands, current = [], ""
    for line in lines:
        if line.startswith("$ ") or current:
            current += " " + (line[2:] if line.startswith("$ ") else line)
            if current.endswith("\\"):
                current = current[:-1]
            else:
                commands.append(shlex.split(current))
                current = ""
    return commands


# --- -V / --version ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-V"],
        ["--version"],
        ["pair", "--version"],
        ["pair", "-V"],
        ["batch", "-V"],
        ["pairwise", "--version"],
        ["a.csv", "b.csv", "--eps", "0.1", "-V"],
    ],
)
def test_version_anywhere(capfd, args):
    assert otdist(capfd, *args) == (0, VERSION_LINE, "")


def test_version_after_double_dash_is_a_file_name(capfd, tmp_path):
    """After ``--`` a ``-V`` is an argument (a file called -V), not the option."""
    code, out, err = otdist(capfd, "pair", "--", str(tmp_path / "a.csv"), "-V")
    assert (code, out) == (2, "")
    assert err == f"Error: {tmp_path / 'a.csv'}: no such file; check the path\n"


def test_help_version_and_completion_load_no_heavy_module():
    code = (
        "import sys; from otcli.cli import run\n"
        "for args in (['--help'], ['-V'], ['pair', '--help'], ['pairwise', '--help']):\n"
        "    assert run(args) == 0, args\n"
        "print([m for m in ('torch', 'numpy', 'pyarrow') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# --- shell completion --------------------------------------------------------------------------


def complete(capfd, monkeypatch, words: str) -> list[str]:
    """What bash completion offers for the command line ``words`` (the cursor at its end)."""
    parts = shlex.split(words) + ([""] if words.endswith(" ") else [])
    monkeypatch.setenv("_OTDIST_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", " ".join(parts))
    monkeypatch.setenv("COMP_CWORD", str(len(parts) - 1))
    code, out, err = otdist(capfd)
    assert (code, err) == (0, "")
    return out.split()


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("otdist pa", ["pair", "pairwise"]),
        ("otdist a.csv b.csv --ep", ["--eps", "--eps-rel"]),  # routed to pair
        ("otdist pair --js", ["--json"]),
        ("otdist batch pairs.tsv --dt", ["--dtype"]),
        ("otdist a.csv b.csv --cost ", list(COST_NAMES)),
        ("otdist --vers", ["--version"]),
        ("otdist sample_da", []),  # no command: the shell lists files
    ],
)
def test_completion(capfd, monkeypatch, words, offered):
    assert sorted(complete(capfd, monkeypatch, words)) == sorted(offered)


def test_show_and_install_completion(capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    code, script, _ = otdist(capfd, "--show-completion", "bash")
    assert code == 0
    assert "_OTDIST_COMPLETE=complete_bash" in script
    assert script.rstrip().endswith("complete -o default -F _otdist_completion otdist")
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out, _ = otdist(capfd, "--install-completion", "bash")
    assert code == 0 and "bash completion installed" in out
    installed = tmp_path / ".bash_completions" / "otdist.sh"
    assert installed.read_text() == script.rstrip("\n")
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_installed_script(capfd, monkeypatch, tmp_path):
    """The script ``--show-completion`` prints, sourced by a real bash, completes options of
    the default command against a real ``otdist`` process."""
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    _, script, _ = otdist(capfd, "--show-completion", "bash")
    (tmp_path / "otdist.sh").write_text(script)
    shim = tmp_path / "bin" / "otdist"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m otcli "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.pop("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION")
    line = (
        f"source {tmp_path / 'otdist.sh'}; COMP_WORDS=(otdist a.csv b.csv --di); COMP_CWORD=3; "
        '_otdist_completion otdist; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", line],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.stdout.split() == ["--divergence"], proc.stderr


# --- --help ------------------------------------------------------------------------------------

COMMANDS = [(), ("pair",), ("batch",), ("pairwise",), ("matrix",), ("show",), ("map",)]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "otdist")
def test_help_shows_no_bool_type_on_flags(capfd, command):
    text = help_text(capfd, *command)
    assert "<bool>" not in text
    assert "--help" in text and "-h" in text
    if command == ("pair",):
        assert "--json" in text and "--divergence" in text
        assert "otcli[exact]" in text  # rich markup escaped, not swallowed
    if command and command not in (("matrix",), ("map",)):
        assert "otcli[plot]" in " ".join(text.split())  # was: "optional extra otcli)"


def test_pairwise_id_help_speaks_of_no_coupling(capfd):
    """pairwise writes no couplings: its --id keeps a column out of the coordinates only."""
    lines = help_text(capfd, "pairwise").splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("│ --id "))
    end = next(k for k in range(start + 1, len(lines)) if not lines[k].startswith("│    "))
    row = " ".join(" ".join(lines[start:end]).replace("│", " ").split())
    assert row == "--id COL Column of point ids, every file: read as text, never a coordinate."


def test_pairwise_help_marks_output_required(capfd):
    text = help_text(capfd, "pairwise")
    row = next(line for line in text.splitlines() if "--output" in line)
    assert row.strip("│ ").startswith("*"), row
    assert "[required]" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pairwise", "a.csv", "b.csv"], "give the output file: -o matrix.npy, .csv or .parquet"),
        (["batch", "pairs.tsv"], "give the results file: -o scores.parquet, .csv or .jsonl"),
    ],
)
def test_missing_output_is_one_line(capfd, monkeypatch, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    assert otdist(capfd, *args) == (2, "", f"Error: -o: {message}\n")
    assert list(tmp_path.iterdir()) == []


def _run_examples(capfd, monkeypatch, tmp_path, command: tuple[str, ...]) -> list[str]:
    """Run the examples of ``otdist COMMAND --help`` in a fresh folder holding sample_data/,
    as a user would paste them (globs expanded); each must succeed. Returns their stdout."""
    text = help_text(capfd, *command)
    tail = [line for line in text.splitlines() if line.strip()][-1].strip()
    examples = examples_of(text)
    assert 2 <= len(examples) <= 3, examples
    assert tail.endswith(" ".join(examples[-1][-3:])), "the help must end with its examples"
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    outputs = []
    for args in examples:
        assert args[0] == "otdist"
        words = [w for a in args[1:] for w in (sorted(glob.glob(a)) if "*" in a else [a])]
        code, out, err = otdist(capfd, *words)
        assert code == 0, (args, err)
        outputs.append(out)
    return outputs


def test_root_examples_run(capfd, monkeypatch, tmp_path):
    _run_examples(capfd, monkeypatch, tmp_path, ())
    # scores.csv.settings.json: the options a later --resume must match (see README)
    assert {p.name for p in tmp_path.iterdir()} == {
        "sample_data", "scores.csv", "scores.csv.settings.json", "costs.csv",
    }  # fmt: skip


def test_pair_examples_run_and_give_the_documented_numbers(capfd, monkeypatch, tmp_path):
    outputs = _run_examples(capfd, monkeypatch, tmp_path, ("pair",))
    # sample_data/README.md: sphere.npy vs torus.npz (its weights) → 0.363.
    got = json.loads(outputs[1])
    assert round(got["cost"], 3) == 0.363 and got["divergence"] > 0 and got["converged"]
    plan = np.loadtxt(tmp_path / "plan.csv", delimiter=",", skiprows=1)
    i, j, value = plan[:, 0].astype(int), plan[:, 1].astype(int), plan[:, 2]
    assert i.max() < 300 and j.max() < 250  # cells_a has 300 rows, cells_b 250
    np.testing.assert_allclose(np.bincount(i, value, 300), 1 / 300, rtol=1e-3)


def test_batch_examples_run_and_give_the_documented_numbers(capfd, monkeypatch, tmp_path):
    _run_examples(capfd, monkeypatch, tmp_path, ("batch",))
    rows = {r["id"]: r for r in _csv_rows(tmp_path / "scores.csv")}
    # sample_data/README.md: moons 1.797, the line at ε = 1 1.408, sphere vs torus 0.363.
    assert {k: round(float(r["cost"]), 3) for k, r in rows.items()} == {
        "moons": 1.797, "line": 1.408, "sphere_torus": 0.363,
    }  # fmt: skip
    assert [r["status"] for r in rows.values()] == ["ok"] * 3
    assert (tmp_path / "scores.parquet").exists()


def test_pairwise_examples_run_and_give_the_documented_numbers(capfd, monkeypatch, tmp_path):
    _run_examples(capfd, monkeypatch, tmp_path, ("pairwise",))
    rows = {Path(r.pop("file")).name: r for r in _csv_rows(tmp_path / "costs.csv")}
    names = ["line_a.csv", "line_b.csv", "moons_a.csv", "moons_b.csv"]
    assert list(rows) == names
    cost = {(a, Path(b).name): float(v) for a, r in rows.items() for b, v in r.items()}
    # The seed's values: the line 1.0001 at ε = 0.1, the moons 1.797.
    assert round(cost["line_a.csv", "line_b.csv"], 4) == 1.0001
    assert round(cost["moons_a.csv", "moons_b.csv"], 3) == 1.797
    d = np.load(tmp_path / "divergences.npy")
    np.testing.assert_allclose(np.diag(d), 0, atol=1e-6)
    np.testing.assert_allclose(d, d.T, rtol=1e-6)
    assert (d[~np.eye(4, dtype=bool)] > 0).all()
    cross = {Path(r.pop("file")).name: r for r in _csv_rows(tmp_path / "ab.csv")}
    assert list(cross) == ["line_a.csv", "moons_a.csv"]  # the rows: the files before --against
    for a, r in cross.items():
        assert [Path(b).name for b in r] == ["line_b.csv", "moons_b.csv"]
        for b, v in r.items():
            assert float(v) == pytest.approx(cost[a, Path(b).name], rel=1e-5)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- option pairs ------------------------------------------------------------------------------


def test_map_examples_run_and_move_the_points(capfd, monkeypatch, tmp_path):
    outputs = _run_examples(capfd, monkeypatch, tmp_path, ("map",))
    assert [o.split("\n")[0].split(" of ")[0] for o in outputs] == ["moved   300 points"] + [
        "moved   15 points"
    ] * 2
    moved = np.loadtxt(tmp_path / "moved.csv", delimiter=",", skiprows=1)
    back = np.loadtxt(tmp_path / "back.csv", delimiter=",", skiprows=1)
    # moons_b moved back onto A's side lands among A's points (within A's bounding box).
    a = np.loadtxt(ROOT / "sample_data" / "moons_a.csv", delimiter=",", skiprows=1)
    assert moved.shape == back.shape == (15, 2)
    assert np.all(back >= a.min(0) - 1e-9) and np.all(back <= a.max(0) + 1e-9)
    cells = (tmp_path / "moved.tsv").read_text().splitlines()
    assert cells[0] == "id\tpc1\tpc2\tpc3\tpc4\tpc5" and cells[1].startswith("ctrl_0000\t")


def test_json_and_quiet_are_refused_together(capfd, tmp_path):
    a, b = ROOT / "sample_data" / "line_a.csv", ROOT / "sample_data" / "line_b.csv"
    plan = tmp_path / "P.npy"
    got = otdist(capfd, a, b, "--json", "--quiet", "--coupling", plan)
    assert got == (2, "", "Error: --quiet: prints the bare number, --json one object; give one\n")
    assert not plan.exists()
    code, out, _ = otdist(capfd, a, b, "--quiet", "--eps", 1)
    assert code == 0 and round(float(out), 4) == 1.4079  # the seed's line at ε = 1, alone
