"""SIGTERM and SIGHUP clean up as Ctrl-C does; what a ``kill -9`` leaves, ``--resume`` removes
(issue 27, item 9).

The in-process tests send the signal to this process from inside a writer, so it arrives
at a known point; a sentinel handler stands in for the default one (which would end the
test run), so a command that does not handle the signal fails the test instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import otdist

SIGNALS = [signal.SIGTERM, signal.SIGHUP]


class Unhandled(Exception):
    """The signal reached the test's sentinel: the command did not handle it."""


@pytest.fixture
def sentinel() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise Unhandled(signum)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def clouds(folder: Path, n: int = 40) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    a, b = folder / "a.csv", folder / "b.csv"
    # Coordinates in [0, 4): at the default ε the pairs converge in well under max_iter
    # (on the integer lattice, 0..39, they took ~10⁴ iterations, converging or not by luck).
    a.write_text("x,y\n" + "".join(f"{k / 10},{k % 7 / 10}\n" for k in range(n)))
    b.write_text("x,y\n" + "".join(f"{k % 5 / 10},{k / 10}\n" for k in range(n)))
    return a, b


def manifest(folder: Path, ids: tuple[str, ...] = ("p0", "p1")) -> Path:
    a, b = clouds(folder)
    path = folder / "pairs.csv"
    path.write_text("id,a,b\n" + "".join(f"{i},{a.name},{b.name}\n" for i in ids))
    return path


def signal_inside(monkeypatch: pytest.MonkeyPatch, target: str, signum: int) -> None:
    """Make ``target`` (module.function) send ``signum`` to this process, then run."""
    module_name, name = target.rsplit(".", 1)
    module = __import__(module_name, fromlist=[name])
    real = getattr(module, name)

    def wrapped(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.usefixtures("sentinel")
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_during_the_coupling_write_removes_its_temporary_file(
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signum: int,
) -> None:
    a, b = clouds(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    signal_inside(monkeypatch, "otcli.io.writers._checked_block", signum)  # mid-write
    code, stdout, err = otdist(capfd, a, b, "--coupling", out / "P.npy", "--quiet")
    assert code == 128 + signum  # 143 for SIGTERM, 129 for SIGHUP
    assert (stdout, err) == ("", "Error: interrupted; no output was written\n")
    assert list(out.iterdir()) == []
    assert signal.getsignal(signum) is not signal.SIG_DFL  # the test's handler is back


@pytest.mark.usefixtures("sentinel")
def test_sigterm_during_the_final_batch_write_keeps_the_journal_for_resume(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = manifest(tmp_path)
    out = tmp_path / "res.csv"
    with monkeypatch.context() as patch:
        signal_inside(patch, "otcli.io.tables._sha256", signal.SIGTERM)  # OUT's temp is written
        code, _, err = otdist(capfd, "batch", pairs, "-o", out)
    assert code == 143
    assert err == ("Error: interrupted; rerun the same command with --resume to continue\n")
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == []  # no temporary file, and the lock released
    assert (tmp_path / "res.csv.journal.jsonl").exists() and not out.exists()
    code, _, err = otdist(capfd, "batch", pairs, "-o", out, "--resume")
    assert (code, err) == (0, "")
    assert out.read_text().count("\n") == 3  # header and both pairs


def test_an_ignored_sighup_stays_ignored(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``nohup otdist ...`` asked to outlive its terminal: the run does not take SIGHUP."""
    a, b = clouds(tmp_path)
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        seen = []

        def probe(*args: object, **kwargs: object) -> None:
            seen.append(signal.getsignal(signal.SIGHUP))

        import otcli.io.writers as writers

        real = writers._checked_block
        writers._checked_block = lambda *a_, **k: (probe(), real(*a_, **k))[1]  # type: ignore[assignment]
        try:
            code, _, _ = otdist(capfd, a, b, "--coupling", tmp_path / "P.npy", "-q")
        finally:
            writers._checked_block = real  # type: ignore[assignment]
        assert code == 0
        assert seen and all(h is signal.SIG_IGN for h in seen)
    finally:
        signal.signal(signal.SIGHUP, old)


KILLED_RUN = """
import os, signal, sys
import {module} as target
real = target.{name}
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
target.{name} = die
sys.argv = ["otdist", *sys.argv[1:]]
from otcli.cli import main
main()
"""


def kill_9_inside(target: str, *args: object) -> None:
    """Run ``otdist *args`` in a process that ``kill -9``s itself inside ``target``."""
    module, name = target.rsplit(".", 1)
    script = KILLED_RUN.format(module=module, name=name)
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_resume_removes_what_a_kill_9_left_beside_out_and_in_the_coupling_dir(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pairs = manifest(tmp_path)
    out, cdx = tmp_path / "res.csv", tmp_path / "cdx"
    run = ("batch", pairs, "-o", out, "--coupling-dir", cdx)
    kill_9_inside("otcli.io.writers._checked_block", *run)  # while writing a coupling
    assert [n for n in hidden(cdx) if ".tmp.npy" in n]  # the killed run's temporary files
    # The user's own files that look alike are never touched.
    mine = [cdx / ".p0.npy.backup.tmp.npy", tmp_path / ".res.csv.0123456789ab.tmp.csv.keep"]
    for path in mine:
        path.write_text("mine")
    kill_9_inside("otcli.io.tables._sha256", *run, "--resume")  # while writing OUT
    assert [n for n in hidden(tmp_path) if n.startswith(".res.csv.") and n.endswith(".tmp.csv")]
    code, _, err = otdist(capfd, *run, "--resume")
    assert (code, err) == (0, "")
    assert hidden(cdx) == [".p0.npy.backup.tmp.npy"]
    assert hidden(tmp_path) == [".res.csv.0123456789ab.tmp.csv.keep"]
    assert sorted(p.name for p in cdx.iterdir() if not p.name.startswith(".")) == [
        "p0.npy",
        "p1.npy",
    ]


def test_leftovers_are_only_otdists_own_temporary_names(tmp_path: Path) -> None:
    from otcli.io.writers import remove_leftover_temps, temp_path

    finals = [
        tmp_path / "res.csv",
        tmp_path / ("漢" * 80 + ".npy"),
        tmp_path / ("x" * 240 + ".npy"),
    ]
    ours = []
    for final in finals:
        outer = temp_path(final)
        ours += [outer, temp_path(outer)]  # a matrix writer's temporary inside another's
    users = [
        ".res.csv.0123456789ab.tmp.csv.bak",
        ".res.csv.backup.tmp.csv",
        ".other.csv.0123456789ab.tmp.csv",
        "res.csv",
    ]
    for path in [*ours, *(tmp_path / u for u in users)]:
        path.write_text("x")
    assert sorted(remove_leftover_temps(finals)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users)
    assert all(len(os.fsencode(p.name)) <= 255 for p in ours)
