"""The README runner's own rules (tests/readme_blocks.py): what it finds in Markdown, what it
refuses, what it compares, and that a changed figure in the real README fails it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from readme_blocks import (
    Example,
    ReadmeFormatError,
    check,
    check_costs,
    environment,
    fresh_folder,
    normalise,
    parse,
    run_shell,
)

ROOT = Path(__file__).resolve().parent.parent

DOC = """# A project

Install:

<!-- readme-test: skip (installs packages) -->
```bash
pip install thing
```

```bash
echo "cost        1.5   the cost"
echo "device      cpu, float32, 0.016 s"
```

```
cost        1.5   the cost
device      cpu, float32, 0.016 s
```

Some prose.

```python
x = 41
print(x + 1)
```

prints:

```text
42
```

```console
$ echo one
one
$ echo two \\
    three
two three
```

```pycon
>>> x + 2
43
```

1. In a list:

   ```sh
   echo listed
   ```

| file | try |
| --- | --- |
| `a.csv` | `otdist a.csv b.csv` → 1.797 |
| `b.csv` | (above) |
"""


@pytest.fixture
def doc(tmp_path: Path) -> list[Example]:
    path = tmp_path / "DOC.md"
    path.write_text(DOC, encoding="utf-8")
    return parse(path)


def test_every_kind_of_example_is_found_in_order(doc: list[Example]) -> None:
    got = [(e.line, e.kind, e.code.splitlines()[0], e.skip) for e in doc]
    assert got == [
        (7, "bash", "pip install thing", "installs packages"),
        (11, "shell", 'echo "cost        1.5   the cost"', None),
        (23, "python", "x = 41", None),
        (34, "shell", "echo one", None),
        (36, "shell", "echo two \\", None),
        (42, "doctest", ">>> x + 2", None),
        (49, "shell", "echo listed", None),
        (54, "shell", "otdist a.csv b.csv", None),
    ]
    assert doc[1].shown == "cost        1.5   the cost\ndevice      cpu, float32, 0.016 s"
    assert doc[1].shown_line == 16
    assert doc[2].shown == "42"
    assert (doc[3].shown, doc[4].shown) == ("one", "two three")
    assert doc[4].code == "echo two \\\n    three"
    assert doc[6].code == "echo listed"  # the list item's indentation removed
    assert doc[7].costs == ["1.797"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prose\n\n```\n42\n```\n", "an output block that follows no example"),
        ("```bash\necho 1\n```\n\n```\n1\n```\n\n```\n1\n```\n", "follows no example"),
        ("```yaml\na: 1\n```\n", "tagged 'yaml'"),
        ("<!-- readme-test: skip -->\n```bash\necho\n```\n", "unknown readme-test directive"),
        ("<!-- readme-test: run twice -->\n```bash\necho\n```\n", "'run twice'"),
        ("```bash\necho 1\n", "never closed"),
        ("```bash\necho 1\n```\n<!-- readme-test: exit 1 -->\n```\n1\n```\n", "output block"),
    ],
)
def test_what_nobody_would_check_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "BAD.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReadmeFormatError, match=message):
        parse(path)


def test_only_durations_and_the_device_may_differ() -> None:
    shown = "cost        1.796833   x\niterations  30\ndevice      cpu, float32, 0.016 s"
    same = "cost        1.796833   x\niterations  30\ndevice      cuda:1, float32, 2.5 s  "
    assert normalise(same) == normalise(shown)
    for changed in ("1.796834", "31"):
        other = (
            shown.replace("1.796833", changed) if "." in changed else shown.replace("30", changed)
        )
        assert normalise(other) != normalise(shown)
    assert normalise('{"cost": 1.5, "seconds": 0.013}') == normalise('{"cost": 1.5, "seconds": 9}')
    assert normalise('{"cost": 1.5, "seconds": 0.013}') != normalise('{"cost": 1.6, "seconds": 0}')


def test_arrow_figures_are_the_costs_to_the_digits_shown(tmp_path: Path) -> None:
    example = Example("DOC.md", 1, "shell", "otdist a.csv b.csv", costs=["1.797"])
    assert check_costs(example, "cost        1.796833   ⟨P, C⟩\n", tmp_path) is None
    assert "1.797" in str(check_costs(example, "cost        1.798   ⟨P, C⟩\n", tmp_path))
    assert "shows 1 cost figures" in str(check_costs(example, "nothing\n", tmp_path))
    (tmp_path / "s.csv").write_text("id,cost\n0,1.7968\n1,0.3627\n", encoding="utf-8")
    table = Example("DOC.md", 1, "shell", "otdist batch m.tsv -o s.csv", costs=["1.797", "0.363"])
    assert check_costs(table, "", tmp_path) is None
    table.costs = ["1.797", "0.364"]
    assert "0.364" in str(check_costs(table, "", tmp_path))


def test_the_synthetic_document_passes_and_a_changed_line_fails(
    doc: list[Example], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = environment(tmp_path)
    namespace: dict[str, object] = {}
    for example in doc[1:7]:  # not the skipped pip, nor the otdist of the table (no files)
        assert check(example, tmp_path, env, namespace) is None, example.label
    doc[1].shown = doc[1].shown.replace("1.5", "1.6")  # type: ignore[union-attr]
    assert "prints other lines" in str(check(doc[1], tmp_path, env, namespace))
    doc[2].shown = "43"
    assert "prints other lines" in str(check(doc[2], tmp_path, env, namespace))
    doc[5].code = ">>> x + 2\n44"
    assert "Expected:" in str(check(doc[5], tmp_path, env, namespace))


def test_exit_code_and_stderr_markers(tmp_path: Path) -> None:
    path = tmp_path / "ERR.md"
    path.write_text(
        "<!-- readme-test: exit 3; stderr -->\n```bash\necho oops >&2; exit 3\n```\n\n```\noops\n```\n",
        encoding="utf-8",
    )
    (example,) = parse(path)
    assert (example.exit_code, example.stderr) == (3, True)
    env = environment(tmp_path)
    assert check(example, tmp_path, env, {}) is None
    example.exit_code = 0
    assert "exit code 3, expected 0" in str(check(example, tmp_path, env, {}))


def test_a_python_error_names_the_readme_line(tmp_path: Path) -> None:
    path = tmp_path / "PY.md"
    path.write_text("text\n\n```python\nx = 1\nundefined_name\n```\n", encoding="utf-8")
    (example,) = parse(path)
    why = str(check(example, tmp_path, environment(tmp_path), {}))
    assert 'PY.md", line 5' in why
    assert "NameError" in why


def test_the_shell_runs_the_otdist_under_test_with_a_home_of_its_own(tmp_path: Path) -> None:
    env = environment(tmp_path / "work")
    code = 'command -v otdist; echo "$HOME"; echo "$OTCLI_THREADS"; python -c "import otcli; print(otcli.__file__)"'
    done = run_shell(Example("E.md", 1, "shell", code), tmp_path, env, 60)
    where, home, threads, package = done.stdout.splitlines()
    assert Path(where) == Path(sys.executable).parent / "otdist"
    assert Path(home) == tmp_path / "work-home"
    assert threads == "1"
    import otcli

    assert Path(package) == Path(otcli.__file__)


def test_a_changed_figure_in_the_readme_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The quick start's output, as committed, passes; with one figure changed, it fails."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = next(e for e in parse(ROOT / "README.md") if e.shown and "moons_a" in e.code)
    assert "1.796834" in str(quick.shown)
    folder = fresh_folder(tmp_path / "clone", ROOT)
    monkeypatch.chdir(folder)
    env = environment(folder)
    assert check(quick, folder, env, {}) is None
    changed = tmp_path / "README.md"
    changed.write_text(readme.replace("1.796834", "1.796835", 1), encoding="utf-8")
    quick2 = next(e for e in parse(changed) if e.shown and "moons_a" in e.code)
    why = check(quick2, folder, env, {})
    assert why is not None
    assert "cost        1.796835" in why
    assert "cost        1.796834" in why
