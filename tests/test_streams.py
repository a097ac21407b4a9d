"""Standard streams the shell closed (issue 27, item 17): real processes, as a shell starts them.

Convention: with stdout closed a command whose result goes there refuses to start (an
``Error`` on stderr, exit 2; see :mod:`otcli.cli.streams` for why); with stderr closed a good
run still prints its result and exits 0; ``batch``, which prints no result, runs as usual.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent.parent / "sample_data"
A, B = DATA / "line_a.csv", DATA / "line_b.csv"


def shell(
    redirect: str, *args: object, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m otcli ARGS REDIRECT`` through bash, arguments passed untouched."""
    command = [
        "bash",
        "-c",
        f'"$@" {redirect}',
        "_",
        sys.executable,
        "-m",
        "otcli",
        *map(str, args),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("command", [("pair", A, B, "-q"), ("matrix", DATA / "sphere.npy", "-q")])
def test_closed_stdout_is_an_error_before_any_work(command: tuple[object, ...]) -> None:
    done = shell(">&-", *command)
    assert done.returncode == 2
    assert done.stderr == (
        "Error: stdout: is closed, so the result has nowhere to go; redirect it to a file, or "
        "to /dev/null to drop it\n"
    )


def test_closed_stderr_still_prints_the_result() -> None:
    done = shell("2>&-", A, B, "-q")
    assert done.returncode == 0
    assert float(done.stdout) > 0


def test_batch_writes_its_table_with_stdout_closed(tmp_path: Path) -> None:
    out = tmp_path / "res.csv"
    done = shell(">&-", "batch", DATA / "pairs.tsv", "-o", out)
    assert (done.returncode, done.stderr) == (0, "")
    assert out.read_text().startswith('"id","a","b"')
