"""Every example of README.md and sample_data/README.md runs as written, in order, in a fresh
folder, and prints what the file shows (issue #23: a changed figure fails here, not in a reader's
hands). The rules (what is an example, the skip marker, the one tolerance for durations and
device names) are in ``readme_blocks.py``.

One test per example, in the file's order, so ``-ra`` lists each skipped block with its reason.
Each Markdown file has its own fresh folder (a copy of sample_data/, HOME beside it) and one
Python namespace; running one example alone (``-k``) first runs the examples above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from readme_blocks import Example, check, environment, fresh_folder, parse

ROOT = Path(__file__).resolve().parent.parent
FILES = ("README.md", "sample_data/README.md")

EXAMPLES = [e for f in FILES for e in parse(ROOT / f, f)]

# slow: about 40 otdist processes (each imports torch) and the loss example's 40 steps took
# 139-176 s on this project's 2 cores under load (load average 4; the loss example alone 26 s);
# CI runs it, -m "not slow" does not (test_readme.py keeps the quick start in the quick loop).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


@dataclass
class Reading:
    """One Markdown file being followed: its folder, Python namespace and progress."""

    folder: Path
    env: dict[str, str]
    namespace: dict[str, object] = field(default_factory=lambda: {"__name__": "__readme__"})
    done: int = 0  # examples of this file run so far


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reading]:
    made: dict[str, Reading] = {}
    for f in FILES:
        folder = fresh_folder(tmp_path_factory.mktemp("readme") / "clone", ROOT)
        made[f] = Reading(folder, environment(folder))
    return made


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.label for e in EXAMPLES])
def test_readme_example(
    example: Example, readings: dict[str, Reading], monkeypatch: pytest.MonkeyPatch
) -> None:
    reading = readings[example.file]
    own = [e for e in EXAMPLES if e.file == example.file]
    index = next(i for i, e in enumerate(own) if e is example)
    unseen = []  # failures of examples above it run here (not selected on their own: -k)
    why = None
    while reading.done <= index:  # the examples above it first, as a reader goes
        current = own[reading.done]
        reading.done += 1
        if current.skip is None:
            monkeypatch.chdir(reading.folder)
            why = check(current, reading.folder, reading.env, reading.namespace)
            if why is not None and current is not example:
                unseen.append(why)
    if example.skip is None and why is not None:
        pytest.fail(why, pytrace=False)
    if unseen:
        pytest.fail("examples above it failed:\n" + "\n".join(unseen), pytrace=False)
    if example.skip is not None:
        pytest.skip(f"{example.file}:{example.line}: {example.skip}")
