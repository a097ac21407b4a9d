"""``otcli.export``: coupling and cost-matrix files hold the result's own matrices.

Oracles: ``result.plan()`` (and POT's log-domain plan for the same problem, so the plan
itself is checked too), the cost matrix from numpy, the entries above a threshold or the k
largest of each row found with numpy, and exact error text for refused outputs.
"""

from __future__ import annotations

import numpy as np
import ot
import pyarrow.parquet as pq
import pytest

import otcli
from conftest import numpy_cost, otdist
from otcli.errors import OptionError, OtcliError
from otcli.export import (
    BYTES_PER_ENTRY,
    DEFAULT_RELATIVE_THRESHOLD,
    block_rows,
    check_writable,
    write_matrices,
)

N, M, EPS = 23, 17, 0.02


@pytest.fixture(scope="module")
def result() -> otcli.SinkhornResult:
    rng = np.random.default_rng(5)
    x, y = rng.random((N, 2)), rng.random((M, 2)) + 0.2
    a, b = rng.uniform(0.5, 1.5, N), rng.uniform(0.5, 1.5, M)
    return otcli.solve(x, y, a, b, eps=EPS, dtype="float64", device="cpu", tol=1e-10)


def read_long(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, value) columns of a long-format file, whatever its extension."""
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        assert t.column_names == ["i", "j", "value"]
        return t["i"].to_numpy(), t["j"].to_numpy(), t["value"].to_numpy()
    sep = "\t" if path.suffix == ".tsv" else ","
    assert path.read_text().splitlines()[0] == sep.join(["i", "j", "value"])
    table = np.loadtxt(path, delimiter=sep, skiprows=1, ndmin=2)
    return table[:, 0].astype(int), table[:, 1].astype(int), table[:, 2]


def test_plan_is_pots(result):
    """The plan the files are compared with is itself right (POT, same problem)."""
    a, b = result.x.weights, result.y.weights
    cmat = numpy_cost(result.x.points, result.y.points, "sqeuclidean")
    plan = ot.sinkhorn(a, b, cmat, EPS, method="sinkhorn_log", stopThr=1e-13, numItermax=100_000)
    np.testing.assert_allclose(result.plan(), plan, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("memory", [None, 5 * M * BYTES_PER_ENTRY])
def test_npy_coupling_and_cost_equal_plan_and_cost_matrix(result, tmp_path, memory):
    """Written block by block (a budget of 5 rows: several blocks, a ragged last one), the
    same matrices."""
    assert block_rows(M, memory) == (5 if memory else (1 << 19) // M)
    paths = write_matrices(
        result, coupling=tmp_path / "P.npy", cost_matrix=tmp_path / "C.npy", memory=memory
    )
    assert paths == [tmp_path / "P.npy", tmp_path / "C.npy"]
    plan, cmat = np.load(tmp_path / "P.npy"), np.load(tmp_path / "C.npy")
    assert plan.dtype == cmat.dtype == np.float64 and plan.shape == cmat.shape == (N, M)
    np.testing.assert_array_equal(plan, result.plan())
    np.testing.assert_array_equal(cmat, result.cost_matrix())
    expected_c = numpy_cost(result.x.points, result.y.points, "sqeuclidean")
    np.testing.assert_allclose(cmat, expected_c, rtol=1e-12, atol=1e-14)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C.npy", "P.npy"]  # no temporaries


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_long_format_keeps_exactly_the_entries_above_threshold(result, tmp_path, suffix):
    plan = result.plan()
    threshold = float(np.median(plan))
    write_matrices(result, coupling=tmp_path / f"P{suffix}", coupling_threshold=threshold)
    i, j, v = read_long(tmp_path / f"P{suffix}")
    keep = plan > threshold
    assert 0 < keep.sum() < plan.size
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    assert got == set(zip(*np.nonzero(keep), strict=True))
    assert len(got) == len(i)  # no entry twice
    np.testing.assert_array_equal(v, plan[i, j])  # floats printed to round-trip


def test_long_format_default_threshold_is_relative_to_the_peak(tmp_path):
    """At small ε most of the plan is below 1e-9 of its largest entry and is left out."""
    x = np.linspace(0, 1, 20)[:, None]
    r = otcli.solve(x, x + 0.01, eps=1e-3, dtype="float64", device="cpu")
    plan = r.plan()
    cut = DEFAULT_RELATIVE_THRESHOLD * plan.max()
    assert 20 <= (plan > cut).sum() < plan.size // 2
    assert ((plan > 0) & (plan <= cut)).sum() > 100  # nonzero entries the default leaves out
    write_matrices(r, coupling=tmp_path / "P.parquet")
    i, j, v = read_long(tmp_path / "P.parquet")
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == set(
        zip(*np.nonzero(plan > cut), strict=True)
    )
    np.testing.assert_array_equal(v, plan[i, j])


def test_long_cost_matrix_keeps_every_entry(result, tmp_path):
    write_matrices(result, cost_matrix=tmp_path / "C.csv", coupling_threshold=1e9)
    i, j, v = read_long(tmp_path / "C.csv")
    assert len(v) == N * M
    cmat = numpy_cost(result.x.points, result.y.points, "sqeuclidean")
    np.testing.assert_allclose(v, cmat[i, j], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", [1, 3, M])
def test_topk_keeps_the_k_largest_of_each_row(result, tmp_path, k):
    write_matrices(result, coupling=tmp_path / "P.parquet", coupling_topk=k, coupling_threshold=0)
    i, j, v = read_long(tmp_path / "P.parquet")
    assert np.bincount(i, minlength=N).tolist() == [k] * N
    plan = result.plan()
    for row in range(N):
        kept = np.sort(j[i == row])
        np.testing.assert_array_equal(kept, np.sort(np.argsort(-plan[row], kind="stable")[:k]))
    np.testing.assert_array_equal(v, plan[i, j])


def test_topk_and_threshold_both_apply(result, tmp_path):
    plan = result.plan()
    threshold = float(np.quantile(plan, 0.9))
    write_matrices(
        result, coupling=tmp_path / "P.csv", coupling_topk=2, coupling_threshold=threshold
    )
    i, j, _ = read_long(tmp_path / "P.csv")
    top2 = np.zeros(plan.shape, dtype=bool)
    np.put_along_axis(top2, np.argsort(-plan, axis=1)[:, :2], True, axis=1)
    expected = set(zip(*np.nonzero(top2 & (plan > threshold)), strict=True))
    assert 0 < len(expected) < 2 * N
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected


def test_all_or_nothing_when_one_write_fails(result, tmp_path):
    """A refused cost-matrix file leaves no coupling file (nor temporaries) behind."""
    with pytest.raises(OptionError) as info:
        write_matrices(result, coupling=tmp_path / "P.npy", cost_matrix=tmp_path / "C.txt")
    assert info.value.where == str(tmp_path / "C.txt")
    assert list(tmp_path.iterdir()) == []


# --- check_writable ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--coupling", "--cost-matrix"])
def test_check_writable_refuses_dense_npy_over_budget(tmp_path, option):
    path = tmp_path / "M.npy"
    outputs = {"coupling": path if option == "--coupling" else None,
               "cost_matrix": path if option == "--cost-matrix" else None}  # fmt: skip
    with pytest.raises(OtcliError) as info:
        check_writable(1000, 300, **outputs, topk=None, memory=1 << 20)
    assert info.value.where == option
    assert str(info.value) == (
        f"{option}: {path}: a dense 1000×300 float64 matrix needs 2.3 MiB, over the memory "
        "budget of 1.0 MiB; write .parquet or .csv (long format i, j, value of the entries "
        "above --coupling-threshold) instead"
    )
    assert not path.exists()


def test_check_writable_budget_boundary_and_long_formats(tmp_path):
    npy = tmp_path / "P.npy"
    need = 1000 * 300 * 8
    check_writable(1000, 300, coupling=npy, cost_matrix=None, topk=None, memory=need)  # fits
    with pytest.raises(OptionError):
        check_writable(1000, 300, coupling=npy, cost_matrix=None, topk=None, memory=need - 1)
    for suffix in (".parquet", ".csv", ".tsv"):  # long formats are never refused for size
        check_writable(10**6, 10**6, coupling=tmp_path / f"P{suffix}",
                       cost_matrix=tmp_path / f"C{suffix}", topk=None, memory=1)  # fmt: skip


def test_check_writable_default_budget_is_the_machines(tmp_path):
    """Without ``memory``, the budget is half the free RAM: 10⁶ × 10⁶ float64 (8 TB) exceeds it."""
    with pytest.raises(OptionError, match=r"^--coupling: .* needs .*, over the memory budget of "):
        check_writable(10**6, 10**6, coupling=tmp_path / "P.npy", cost_matrix=None, topk=None, memory=None)  # fmt: skip
    check_writable(10, 10, coupling=tmp_path / "P.npy", cost_matrix=None, topk=None, memory=None)


@pytest.mark.parametrize(
    ("coupling", "topk", "message"),
    [
        ("P.csv", 0, "--coupling-topk: must be ≥ 1, got 0"),
        ("P.npy", 2, "--coupling-topk: applies to .parquet, .csv and .tsv, not .npy"),
    ],
)
def test_check_writable_topk_errors(coupling, topk, message):
    with pytest.raises(OptionError) as info:
        check_writable(5, 5, coupling=coupling, cost_matrix=None, topk=topk, memory=None)
    assert str(info.value) == message


# --- export blocks sized by entries within the memory budget (issue 16, item 19) --------------


def test_block_rows_are_sized_by_entries_within_the_budget():
    assert block_rows(20_000) == (1 << 19) // 20_000  # 26 rows, not a fixed 4,096
    assert block_rows(3) == (1 << 19) // 3
    assert block_rows(20_000, memory=16 << 20) == (16 << 20) // BYTES_PER_ENTRY // 20_000
    assert block_rows(10**9, memory=1) == 1  # at least one row, whatever the budget


_RSS_SCRIPT = """
import resource, sys
import numpy as np
from otcli.cloud import make_cloud
from otcli.costs import get_cost
from otcli.export import write_matrices
from otcli.result import SinkhornResult

def export(n, name):
    rng = np.random.default_rng(0)
    x, y = make_cloud(rng.random((n, 2))), make_cloud(rng.random((n, 2)))
    res = SinkhornResult(
        x=x, y=y, cost_fn=get_cost("sqeuclidean"), eps=0.01, f=np.zeros(n), g=np.zeros(n),
        cost=0.0, objective=0.0, iterations=1, marginal_error=0.0, converged=True, tol=1e-5,
        device="cpu", dtype="float64", centre=np.zeros(2), geometry="online", seconds=0.0,
    )
    write_matrices(res, coupling=sys.argv[1] + name, coupling_topk=3, coupling_threshold=0.0,
                   memory=int(sys.argv[2]))

export(50, "warm-up.parquet")  # loads pyarrow's writer and torch's kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
export(3000, "P.parquet")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow  # a subprocess and 9 million entries: 4 s idle, 12 s on a busy machine
def test_topk_export_peak_memory_stays_within_the_budget(tmp_path):
    """A 3,000 × 3,000 plan written as its top 3 per row: 9,000 rows out of 9 million
    entries. With fixed 4,096-row blocks it was one block and the export's peak grew by
    about 300 MB; sized by entries within a 32 MiB --memory it grows by that and a few MiB."""
    import subprocess
    import sys

    memory = 32 << 20
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, f"{tmp_path}/", str(memory)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    grown = int(proc.stdout.split()[-1])
    assert grown <= memory + (16 << 20), f"export peak grew by {grown / 2**20:.0f} MiB"
    i, _, v = read_long(tmp_path / "P.parquet")
    assert len(v) == 3 * 3000 and np.bincount(i, minlength=3000).tolist() == [3] * 3000


# --- what a long coupling keeps, recorded and said -------------------------------------------


def test_topk_coupling_records_its_shape_and_kept_mass(capfd, tmp_path):
    """A top-1 coupling of 300 × 400 points keeps a small share of the mass: the run says
    how much, the Parquet metadata records n, m and the kept mass, and ``show`` reads it as
    a 300 × 400 coupling (the columns no row's top entry reaches are still counted)."""
    import json

    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, rng.random((300, 2)))
    np.save(b, rng.random((400, 2)))
    plan = tmp_path / "P.parquet"
    code, out, err = otdist(
        capfd, a, b, "--eps", "0.01", "--coupling", plan, "--coupling-topk", 1, "--json"
    )
    assert code == 0
    got = pq.read_table(plan)
    meta = {k.decode(): v.decode() for k, v in pq.read_metadata(plan).metadata.items()}
    kept = float(np.sum(got.column("value").to_numpy()))
    assert meta["otcli.n"] == "300" and meta["otcli.m"] == "400"
    assert meta["otcli.kind"] == "coupling" and meta["otcli.topk"] == "1"
    assert float(meta["otcli.kept_sum"]) == pytest.approx(kept, rel=1e-12)
    assert float(meta["otcli.eps"]) == 0.01
    share = kept / float(meta["otcli.plan_mass"])
    assert 0.05 < share < 0.9  # one entry of 400 per row
    assert (
        f"the long format keeps {share:.1%} of the plan's mass (--coupling-topk 1, entries above "
        in err
    )
    code, out, _ = otdist(capfd, "show", plan, "--json")
    shown = json.loads(out)
    assert (shown["n"], shown["m"], shown["exact_shape"]) == (300, 400, True)
    assert shown["coupling"] is True
    assert shown["kept_share"] == pytest.approx(share, rel=1e-9)
    code, out, _ = otdist(capfd, "show", plan)
    assert (
        "300 × 400" in out
        and f"{share:.1%} of the plan's mass (--coupling-topk 1, entries above " in out
    )


def test_a_full_coupling_says_nothing_about_kept_mass(capfd, tmp_path):
    rng = np.random.default_rng(4)
    a = tmp_path / "a.npy"
    np.save(a, rng.random((50, 2)))
    code, _, err = otdist(capfd, a, a, "--coupling", tmp_path / "P.csv", "-q")
    assert code == 0 and err == ""
