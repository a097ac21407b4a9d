"""The examples of a Markdown file, found and run in order as a reader would run them.

Used by ``tests/test_readme_blocks.py`` on README.md and sample_data/README.md (issue #23: "README
examples that run as written, in order, in a fresh folder").

What counts as an example
-------------------------
- Fenced blocks (```` ``` ```` or ``~~~``, indented ones in list items too) are read by the first
  word of their info string. A block tagged ``bash``, ``sh``, ``shell`` or ``console`` is shell.
  If some of its lines start with ``$ ``, those lines are the commands (a line ending in ``\\``
  goes on) and the lines after each one, up to the next ``$ ``, are what that command prints
  (each command is its own ``bash``). Otherwise the whole block is one script, run by
  ``bash -e -o pipefail`` (every command must succeed).
- A fenced block tagged ``python``, ``py`` or ``pycon`` is Python, run in one namespace per file
  (a later block sees what an earlier one defined). A block with ``>>>`` lines is a doctest: each
  ``>>>`` result is compared (doctest's ELLIPSIS and NORMALIZE_WHITESPACE; ``...`` elides only
  where the README writes it).
- A fenced block tagged ``text``, ``output``, ``json`` or not tagged shows output: it is what the
  nearest example above it printed on stdout, prose between them allowed. One that follows no
  example, or follows one that already has its output, is an error: output nobody checks drifts.
- In a table with a column headed ``try``, each inline ``otdist ...`` span is a shell command, and
  ``→ v1, v2, ...`` after it gives the ``cost`` figures it prints (or, when it prints none, the
  ``cost`` column of its ``-o`` file), each to the digits shown.
- Any other tag (``yaml``, ``dockerfile``, ...) is an error unless the block is marked skip.

Markers
-------
An HTML comment on the last non-blank line before a block's opening fence, invisible on the
rendered page: ``<!-- readme-test: DIRECTIVE; DIRECTIVE -->``, with directives

- ``skip (why)``: the block is not run; the test reports it as skipped, with the reason (one is
  required). For what cannot run in CI: a cluster on other hosts, a GPU, ``pip install``, Docker.
- ``exit N``: the block must end with exit code N instead of 0 (shell).
- ``stderr``: the output shown is compared with stderr instead of stdout (shell).

A marker goes on the example, not on its output block (there it is an error, but for ``skip``).

How output is compared
----------------------
Line by line, trailing spaces and blank lines at the end ignored. Exactly, but for one rule, for
what differs from run to run by nature: a duration (a number followed by ``s`` or ``ms``, or the
value of a ``"seconds"`` JSON key) matches any duration, and the device named on a ``device``
line (``cpu``, ``cuda:0``, ``mps``) any device. Every other figure must be as shown, so a
changed figure fails. Examples run on the CPU and one thread, as the README's outputs were
made (shell: CUDA hidden, ``OTCLI_THREADS=1``; Python: ``torch.set_num_threads(1)``): the thread
count changes the order of float sums, and so the last digit of a marginal error.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

SHELL_TAGS = frozenset({"bash", "sh", "shell", "console"})
PYTHON_TAGS = frozenset({"python", "py", "pycon"})
OUTPUT_TAGS = frozenset({"", "text", "output", "json"})
SHELL_TIMEOUT = 300  # seconds for one shell example; the slowest takes a few

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")  # indent, fence, info string
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*\((.+)\)$")
_EXIT = re.compile(r"^exit\s+(\d+)$")
_INLINE = re.compile(r"`(otdist [^`]+)`(?:\s*→\s*([-+\d.eE]+(?:\s*,\s*[-+\d.eE]+)*))?")
_DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\s?(?:ms|s)\b")
_SECONDS_KEY = re.compile(r'("seconds"\s*:\s*)[-+\d.eE]+')
_DEVICE_LINE = re.compile(r"^(device\s+)(?:cpu|mps|cuda(?::\d+)?)\b")


class ReadmeFormatError(ValueError):
    """The Markdown breaks a rule above (an output block with no example, an unknown tag...)."""


@dataclass
class Example:
    """One thing to run: a shell script or command, or a Python block."""

    file: str  # the Markdown file's name, for messages
    line: int  # 1-based line of the code's first line
    kind: str  # "shell", "python", "doctest"; a skipped block keeps its tag
    code: str
    skip: str | None = None  # the reason, when marked skip
    exit_code: int = 0
    stderr: bool = False  # compare the output shown with stderr
    shown: str | None = None  # the output the file shows, if any
    shown_line: int | None = None
    costs: list[str] = field(default_factory=list)  # "→ 1.797" figures of a `try` cell

    @property
    def label(self) -> str:
        first = self.code.strip().splitlines()[0] if self.code.strip() else ""
        first = first.removeprefix("$ ").removeprefix(">>> ")
        return f"{self.file}:{self.line} {first[:50]}"


def _directives(marker: str | None, file: str, line: int) -> dict[str, object]:
    found: dict[str, object] = {}
    if marker is None:
        return found
    for part in (p.strip() for p in marker.split(";")):
        if m := _SKIP.match(part):
            found["skip"] = m.group(1).strip()
        elif m := _EXIT.match(part):
            found["exit_code"] = int(m.group(1))
        elif part == "stderr":
            found["stderr"] = True
        else:
            raise ReadmeFormatError(
                f"{file}:{line}: unknown readme-test directive {part!r} "
                "(known: 'skip (why)', 'exit N', 'stderr')"
            )
    return found


def _console_examples(
    file: str, start: int, lines: list[str], extra: dict[str, object]
) -> list[Example]:
    """A block of ``$ command`` lines, each followed by what it prints."""
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if lines[i].strip():
                raise ReadmeFormatError(
                    f"{file}:{start + i}: output before the first '$ ' command of a console block"
                )
            i += 1
            continue
        first = i
        command = [lines[i][2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        i += 1
        out_start = i
        while i < len(lines) and not lines[i].startswith("$ "):
            i += 1
        shown = "\n".join(lines[out_start:i])
        examples.append(Example(file, start + first, "shell", "\n".join(command), **extra))
        if shown.strip():
            examples[-1].shown, examples[-1].shown_line = shown, start + out_start
    return examples


def _table_examples(file: str, lines: list[str]) -> list[Example]:
    """Inline ``otdist`` commands in the ``try`` column of tables, with their ``→`` figures."""
    examples: list[Example] = []
    column: int | None = None
    for number, text in enumerate(lines, 1):
        if not text.lstrip().startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in text.strip().strip("|").split("|")]
        if column is None:
            heads = [c.lower() for c in cells]
            column = heads.index("try") if "try" in heads else -1
            continue
        if column < 0 or column >= len(cells):
            continue
        for m in _INLINE.finditer(cells[column]):
            figures = [v.strip() for v in m.group(2).split(",")] if m.group(2) else []
            examples.append(Example(file, number, "shell", m.group(1), costs=figures))
    return examples


def parse(path: Path, name: str | None = None) -> list[Example]:
    """Every example of a Markdown file, in the order of the file."""
    file = name or path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[tuple[int, Example]] = []  # (order key, example)
    last: Example | None = None  # the latest example, while its output may still follow
    marker: str | None = None
    marker_line = 0
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            if mm := _MARKER.match(lines[i]):
                marker, marker_line = mm.group(1), i + 1
            elif lines[i].strip():
                marker = None
            i += 1
            continue
        indent, fence = m.group(1), m.group(2)
        tag = (m.group(3).split() or [""])[0].strip("{}.").lower()
        closing = re.compile(rf"^\s*{fence[0]}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ReadmeFormatError(f"{file}:{i + 1}: a code block that is never closed")
        body = [b.removeprefix(indent) for b in lines[i + 1 : end]]  # a block in a list item
        extra = _directives(marker, file, marker_line)
        marker = None
        start = i + 2  # the line number of the body's first line
        if extra and "skip" not in extra and tag in OUTPUT_TAGS:
            raise ReadmeFormatError(
                f"{file}:{marker_line}: a readme-test marker on an output block: put it on the "
                "example above"
            )
        if "skip" in extra:
            last = Example(file, start, tag or "text", "\n".join(body), **extra)
            found.append((i, last))  # an output block after it belongs to it, unchecked
        elif tag in OUTPUT_TAGS:
            if last is None:
                raise ReadmeFormatError(
                    f"{file}:{i + 1}: an output block that follows no example (or one whose "
                    "output is already shown): mark it <!-- readme-test: skip (why) -->"
                )
            last.shown, last.shown_line = "\n".join(body), start
            last = None
        elif tag in SHELL_TAGS:
            if any(b.startswith("$ ") for b in body):
                found += [(i, e) for e in _console_examples(file, start, body, extra)]
                last = None
            else:
                last = Example(file, start, "shell", "\n".join(body), **extra)
                found.append((i, last))
        elif tag in PYTHON_TAGS:
            code = "\n".join(body)
            doctest_style = any(b.lstrip().startswith(">>>") for b in body)
            last = Example(file, start, "doctest" if doctest_style else "python", code, **extra)
            found.append((i, last))
            if doctest_style:
                last = None  # its results are inside the block
        else:
            raise ReadmeFormatError(
                f"{file}:{i + 1}: a code block tagged {tag!r}, which the README test cannot run: "
                "tag it bash or python, or mark it <!-- readme-test: skip (why) -->"
            )
        i = end + 1
    found += [(line - 1, e) for e in _table_examples(file, lines) for line in [e.line]]
    found.sort(key=lambda pair: pair[0])
    return [e for _, e in found]


# --- comparing -------------------------------------------------------------------------------


def normalise(text: str) -> list[str]:
    """Lines with the run-to-run variation (durations, the device) replaced by placeholders."""
    lines = [line.rstrip() for line in text.rstrip().splitlines()]
    out = []
    for line in lines:
        line = _DEVICE_LINE.sub(r"\1<device>", line)
        line = _SECONDS_KEY.sub(r"\1<seconds>", line)
        out.append(_DURATION.sub("<duration>", line))
    return out


def _costs_printed(stdout: str, command: str, cwd: Path) -> list[float]:
    """The ``cost`` figures a command printed, or those of its ``-o`` table."""
    printed = [float(line.split()[1]) for line in stdout.splitlines() if line.startswith("cost ")]
    if printed:
        return printed
    words = shlex.split(command)
    if "-o" in words:
        import pandas as pd

        out = cwd / words[words.index("-o") + 1]
        readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet}
        if out.suffix == ".jsonl":
            return list(pd.read_json(out, lines=True)["cost"])
        return list(readers[out.suffix](out)["cost"])
    return []


def check_costs(example: Example, stdout: str, cwd: Path) -> str | None:
    """Why the ``→`` figures differ from the run, or None: each printed to the digits shown."""
    got = _costs_printed(stdout, example.code, cwd)
    if len(got) != len(example.costs):
        return f"{example.label}: shows {len(example.costs)} cost figures, the run gave {got}"
    for shown, value in zip(example.costs, got, strict=True):
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        if f"{value:.{decimals}f}" != shown:
            return f"{example.label}: shows → {shown}, the run gives {value} ({value:.{decimals}f})"
    return None


# --- running ---------------------------------------------------------------------------------


def environment(folder: Path) -> dict[str, str]:
    """The shell's environment: the ``otdist`` under test first on PATH, CUDA hidden, one
    thread, HOME beside ``folder``.

    ``otdist`` is the entry point beside ``sys.executable`` (the venv's bin/, or .venv-ci's in
    CI), importing the otcli this test imports. HOME is a folder of the run, so that an example
    such as ``otdist --install-completion`` writes there and not into the reader's dotfiles.
    """
    import otcli

    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    source = str(Path(otcli.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [source, env.get("PYTHONPATH", "")] if p)
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["OTCLI_THREADS"] = "1"  # the README's outputs: another count moves a last digit
    home = folder.parent / f"{folder.name}-home"
    home.mkdir(exist_ok=True)
    env.setdefault("MPLCONFIGDIR", str(Path.home() / ".cache" / "matplotlib"))
    env["HOME"] = str(home)
    return env


@dataclass
class Outcome:
    """What an example did: exit code and output (stdout, stderr)."""

    code: int
    stdout: str
    stderr: str


def run_shell(example: Example, cwd: Path, env: dict[str, str], timeout: float) -> Outcome:
    """Run a shell example through bash in ``cwd``: ``-e`` and ``pipefail``, as a careful reader."""
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", example.code],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # an example that waits for a terminal fails, never hangs
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_python(example: Example, namespace: dict[str, object]) -> Outcome:
    """Run a Python example in the file's namespace (in the current directory); stdout caught.

    A doctest example fails on its first result that differs from what the block shows.
    """
    out = io.StringIO()
    if example.kind == "doctest":
        test = doctest.DocTestParser().get_doctest(
            example.code, {}, example.label, example.file, example.line - 1
        )
        test.globs = namespace  # get_doctest copies the globals: share the file's namespace
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report = io.StringIO()
        runner.run(test, out=report.write, clear_globs=False)
        return Outcome(1 if runner.failures else 0, "", report.getvalue())
    # Blank lines in front: a traceback names the README's own line numbers.
    code = compile("\n" * (example.line - 1) + example.code, example.file, "exec")
    try:
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    except Exception:  # any error of the example is its failure, reported with its traceback
        return Outcome(1, out.getvalue(), traceback.format_exc())
    return Outcome(0, out.getvalue(), "")


def fresh_folder(folder: Path, root: Path) -> Path:
    """A folder holding a copy of sample_data/, as a fresh clone's root has (nothing else)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "sample_data", folder / "sample_data")
    return folder


def check(
    example: Example, folder: Path, env: dict[str, str], namespace: dict[str, object]
) -> str | None:
    """Run one example in ``folder`` (the current directory must be ``folder`` for Python);
    return why it failed (exit code, output or figures unlike what the file shows), or None."""
    if example.kind in ("python", "doctest"):
        done = run_python(example, namespace)
    else:
        done = run_shell(example, folder, env, SHELL_TIMEOUT)
    if done.code != example.exit_code:
        return (
            f"{example.label}: exit code {done.code}, expected {example.exit_code}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    if example.costs:
        return check_costs(example, done.stdout, folder)
    if example.shown is not None:
        got = normalise(done.stderr if example.stderr else done.stdout)
        shown = normalise(example.shown)
        if got != shown:
            return (
                f"{example.label}: prints other lines than {example.file}:{example.shown_line} "
                "shows\n--- shown\n" + "\n".join(shown) + "\n--- printed\n" + "\n".join(got)
            )
    return None
