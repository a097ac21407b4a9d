"""What a Python user meets first: ``import otcli`` is cheap, ``help``/``dir`` list the API,
``repr`` of a result is one line of figures, and errors name the keywords they passed."""

from __future__ import annotations

import pydoc
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import ot
import pytest

import otcli
from otcli.errors import DeviceError, OptionError

pytestmark = pytest.mark.usefixtures("single_thread")

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
FUNCTIONS = ["read_cloud", "make_cloud", "solve", "divergence", "make_config", "solve_exact",
             "run_pair"]  # fmt: skip
CLASSES = ["Cloud", "SinkhornResult", "DivergenceResult", "ExactResult", "SolveConfig",
           "ReadOptions", "PairOutputs", "PairReport", "OtcliError", "SolverError"]  # fmt: skip


# --- import, dir, help -------------------------------------------------------------------------


def test_import_and_dir_stay_lazy():
    code = (
        "import sys, otcli; names = dir(otcli); doc = otcli.__doc__\n"
        "print(sorted(set(otcli.__all__) - set(names)))\n"
        "print([m for m in ('torch', 'numpy', 'pyarrow', 'rich') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["[]", "[]"]


def test_all_names_resolve_to_the_documented_objects():
    for name in otcli.__all__:
        obj = getattr(otcli, name)
        assert name == "__version__" or obj.__module__.startswith("otcli."), name
        assert name in otcli.__doc__ or name.endswith("Error") or name == "__version__", name
    assert set(FUNCTIONS + CLASSES) <= set(otcli.__all__)
    with pytest.raises(AttributeError, match="no attribute 'sovle'"):
        otcli.sovle  # noqa: B018


def test_help_lists_the_api():
    text = pydoc.render_doc(otcli, renderer=pydoc.plaintext)
    for name in FUNCTIONS:
        assert re.search(rf"^\s+{name}\(", text, re.MULTILINE), name
    for name in CLASSES:
        assert re.search(rf"class {name}\b", text), name
    assert text.index("solve(") < text.index("__getattr__(")  # not only the lazy loader


# --- repr: figures, not arrays -----------------------------------------------------------------


def _field(text: str, name: str) -> str:
    """The value shown for ``name=`` in a repr."""
    return re.search(rf"\b{name}=([^,)]+)", text).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_iris().data
    return data[:75], data[75:]


def test_sinkhorn_result_repr_is_one_line_of_figures(iris):
    x, y = iris
    r = otcli.solve(x, y, eps=0.5, dtype="float64")
    text = repr(r)
    assert "\n" not in text and len(text) < 250 and "array" not in text and "[" not in text
    assert text.startswith("SinkhornResult(n=75, m=75, dim=4, cost=")
    # The cost it shows is the converged entropic cost (POT, log domain, float64) to 6 digits.
    M = ot.dist(x, y)
    w = np.full(75, 1 / 75)
    P = ot.sinkhorn(w, w, M, 0.5, method="sinkhorn_log", stopThr=1e-12, numItermax=100000)
    assert float(_field(text, "cost")) == pytest.approx(float((P * M).sum()), rel=1e-5)
    assert float(_field(text, "eps")) == 0.5
    assert int(_field(text, "iterations")) == r.iterations > 0
    assert _field(text, "converged") == "True"
    assert _field(text, "engine") == repr(r.engine) and r.engine


def test_divergence_repr(iris):
    x, y = iris
    d = otcli.divergence(x, y, eps=0.5, dtype="float64")
    text = repr(d)
    assert "\n" not in text and "array" not in text and len(text) < 250
    assert float(_field(text, "divergence")) == pytest.approx(d.divergence, rel=1e-5)
    assert d.divergence > 0
    its = (d.xy.iterations, d.xx.iterations, d.yy.iterations)
    assert f"iterations={its}," in text


def test_cloud_pair_report_and_exact_result_reprs():
    cloud = otcli.read_cloud(SAMPLES / "moons_a.csv")
    assert repr(cloud) == f"Cloud(n=15, dim=2, source={str(SAMPLES / 'moons_a.csv')!r})"
    config = otcli.make_config(device="cpu")
    report = otcli.run_pair(str(SAMPLES / "moons_a.csv"), str(SAMPLES / "moons_b.csv"), config)
    text = repr(report)
    assert "\n" not in text and "n=15, m=15, dim=2" in text
    assert round(float(_field(text, "cost")), 3) == 1.797  # the seed's moons
    line = [otcli.read_cloud(SAMPLES / f"line_{s}.csv") for s in "ab"]
    pytest.importorskip("scipy")
    exact = otcli.solve_exact(*line, config)
    text = repr(exact)
    assert text.startswith("ExactResult(n=5, m=5, dim=2, cost=1, method='assignment', support=5,")
    assert float(_field(text, "marginal_error")) < 1e-12  # the seed's line: all move up by 1


# --- errors name the caller's keywords ---------------------------------------------------------


def test_errors_name_keywords_in_python_and_options_in_the_cli(capfd):
    from conftest import otdist

    a, b = SAMPLES / "line_a.csv", SAMPLES / "line_b.csv"
    x = otcli.read_cloud(a)
    with pytest.raises(OptionError, match=r"^max_iter: must be a positive integer, got 0$"):
        otcli.solve(x, x, max_iter=0)
    with pytest.raises(OptionError, match=r"^max_iter: must be a positive integer, got 0$"):
        otcli.make_config(max_iter=0)
    with pytest.raises(
        OptionError, match=r"^eps_rel: give eps \(absolute\) or eps_rel \(relative\), not both$"
    ):
        otcli.divergence(x, x, eps=0.1, eps_rel=0.05)
    with pytest.raises(OptionError, match=r"^geometry: dense needs .* over the memory budget .*; "
                       r"use geometry='online' or auto$"):  # fmt: skip
        otcli.solve(x, x, geometry="dense", memory=10, dtype="float64")
    # otcli.config.make_config is the CLI's: it names the options.
    from otcli.config import make_config

    with pytest.raises(OptionError, match=r"^--max-iter: must be a positive integer, got 0$"):
        make_config(max_iter=0)
    assert otdist(capfd, a, b, "--max-iter", 0) == (
        2, "", "Error: --max-iter: must be a positive integer, got 0\n"
    )  # fmt: skip
    assert otdist(capfd, a, b, "--eps", 0.1, "--eps-rel", 0.05) == (
        2, "", "Error: --eps-rel: give --eps (absolute) or --eps-rel (relative), not both\n"
    )  # fmt: skip


def test_renamed_errors_keep_their_class():
    with pytest.raises(DeviceError) as info:
        otcli.make_config(device="cuda:x")
    assert (info.value.where, str(info.value)) == (
        "device", "device: bad CUDA device 'cuda:x'; use cuda or cuda:K"
    )  # fmt: skip


def test_no_import_cycle_between_modules():
    """Data flows one way: no module of src/otcli imports one that imports it back, through
    any chain (runtime and type-checking imports alike; package ``__init__`` facades, which
    only re-export, left out). A batch backend is called by the run, it does not import it."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "otcli"
    mods, facades = {}, set()
    for path in root.rglob("*.py"):
        name = ".".join(("otcli", *path.relative_to(root).with_suffix("").parts))
        if name.endswith(".__init__"):
            name = name.removesuffix(".__init__")
            facades.add(name)
        mods[name] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        if name in facades:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("otcli"):
                found = [f"{node.module}.{a.name}" for a in node.names]
                found = [t if t in mods else node.module for t in found]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in found if t in mods and t != name and t not in facades}
    cycles, state = [], {}

    def visit(u: str, stack: list[str]) -> None:
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                cycles.append(" -> ".join([*stack[stack.index(v) :], v]))
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert cycles == []
    assert "otcli.batch.run" not in graph["otcli.batch.cluster"] | graph["otcli.batch.shards"]
