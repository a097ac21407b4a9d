"""``otdist matrix``: OT for a precomputed cost matrix equals OT between the clouds it came from;
long-format tables, masses, unbalanced options, the memory rule and every refusal."""

from __future__ import annotations

import json

import numpy as np
import ot
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import otcli
from conftest import otdist
from otcli.errors import InputError, OptionError
from otcli.io.matrices import read_cost_matrix
from otcli.matrix import solve_matrix

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def pair(tmp_path, rng):
    """Two weighted clouds in files, their masses, and ot.dist between them as .npy."""
    x, y = rng.random((14, 3)), rng.random((11, 3)) + 0.2
    wa, wb = rng.random(14) + 0.1, rng.random(11) + 0.1
    np.savez(tmp_path / "x.npz", points=x, weights=wa)
    np.savez(tmp_path / "y.npz", points=y, weights=wb)
    np.save(tmp_path / "C.npy", ot.dist(x, y))
    np.save(tmp_path / "a.npy", wa)
    np.savetxt(tmp_path / "b.csv", wb)
    return tmp_path, x, y, wa, wb


def _long(path, C):
    i, j = np.divmod(np.arange(C.size), C.shape[1])
    table = pa.table({"i": i, "j": j, "value": C.reshape(-1)})
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        rows = zip(i.tolist(), j.tolist(), C.reshape(-1).tolist(), strict=True)
        path.write_text("i,j,value\n" + "".join(f"{a},{b},{v!r}\n" for a, b, v in rows))


@pytest.mark.parametrize("extra", [[], ["--rho", "0.3"], ["--rho-b", "0.2", "--eps-rel", "0.1"]])
def test_matrix_of_ot_dist_equals_the_clouds(capfd, pair, extra):
    d, *_ = pair
    args = ["--dtype", "float64", "--json", *extra]
    code, out, err = otdist(capfd, "matrix", d / "C.npy", "--a", d / "a.npy", "--b", d / "b.csv",
                            *args)  # fmt: skip
    assert code == 0, err
    code2, out2, err2 = otdist(capfd, d / "x.npz", d / "y.npz", *args)
    assert code2 == 0, err2
    got, ref = json.loads(out), json.loads(out2)
    for key in ("cost", "objective", "eps", "marginal_error"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-13), key
    assert got["converged"] and (got["n"], got["m"]) == (14, 11)
    assert got["cost_fn"] == f"matrix({d / 'C.npy'})" and got["engine"] == "kernel"
    assert ("mass" in got) == ("mass" in ref) == bool(extra)
    assert got.get("mass", 1) == pytest.approx(ref.get("mass", 1), rel=1e-9)
    assert "w_p" not in got


@pytest.mark.parametrize("name", ["C.parquet", "C.csv"])
def test_long_format_and_uniform_masses(capfd, pair, name):
    d, x, y, *_ = pair
    C = ot.dist(x, y)
    _long(d / name, C)
    code, out, err = otdist(capfd, "matrix", d / name, "--eps", 0.05, "--quiet", "--dtype",
                            "float64")  # fmt: skip
    assert code == 0, err
    ref = ot.sinkhorn(np.full(14, 1 / 14), np.full(11, 1 / 11), C, 0.05, method="sinkhorn_log",
                      stopThr=1e-13, numItermax=100_000)  # fmt: skip
    assert float(out) == pytest.approx(float((ref * C).sum()), rel=1e-6)
    assert err == ""


def test_coupling_file_is_the_plan(capfd, pair):
    d, x, y, wa, wb = pair
    code, _, err = otdist(capfd, "matrix", d / "C.npy", "--a", d / "a.npy", "--b", d / "b.csv",
                          "--dtype", "float64", "--coupling", d / "P.npy", "--rho", 0.4)  # fmt: skip
    assert code == 0, err
    a, b = wa / wa.sum(), wb / wb.sum()
    ref = ot.unbalanced.sinkhorn_unbalanced(a, b, ot.dist(x, y), 0.1, 0.4,
                                            method="sinkhorn_stabilized", stopThr=1e-15,
                                            numItermax=100_000)  # fmt: skip
    np.testing.assert_allclose(np.load(d / "P.npy"), ref, atol=1e-7)


def test_library_solve_matrix_equals_solve(rng):
    x, y = rng.random((9, 2)), rng.random((12, 2))
    r = solve_matrix(ot.dist(x, y), eps=0.05, dtype="float64", rho=0.5)
    s = otcli.solve(x, y, eps=0.05, dtype="float64", rho=0.5)
    assert r.cost == pytest.approx(s.cost, rel=1e-9) and r.mass == pytest.approx(s.mass)
    np.testing.assert_allclose(r.plan(), s.plan(), atol=1e-12)
    with pytest.raises(OptionError, match=r"^reach: does not apply to a cost matrix"):
        solve_matrix(ot.dist(x, y), reach=1.0)


def test_the_dense_geometry_takes_the_matrix_without_a_copy(rng):
    """C is held once, in the working dtype: the geometry reads that very tensor."""
    import torch

    from otcli.api import make_geometry
    from otcli.config import make_config
    from otcli.matrix import matrix_problem

    x, y, config = matrix_problem(rng.random((6, 4)), None, None, make_config(device="cpu"))
    xt = torch.tensor(x.points)[None]
    yt = torch.tensor(y.points)[None]
    ones = torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    geom = make_geometry(xt, yt, *ones, config)
    assert geom.cost.data_ptr() == config.cost.matrix.data_ptr()
    assert config.cost.whole(xt.flip(1), yt, torch.float32) is None  # not the identity


# --- refusals -----------------------------------------------------------------------------


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: _write(d / "C.csv", "i,j,value\n0,0,1\n0,1,2\n1,0,3\n"),
         "lists 3 entries, but its largest indices make it 2×2 = 4; a cost matrix lists every "
         "(i, j) once"),
        (lambda d: _write(d / "C.csv", "i,j,value\n0,0,1\n0,1,2\n1,0,3\n1,0,4\n"),
         "entry i=1, j=1 is missing (another (i, j) is listed twice)"),
        (lambda d: _write(d / "C.csv", "i,j,value\n0,0,1\n0,1,inf\n"),
         "non-finite cost inf at i=0, j=1 (0-based)"),
        (lambda d: _write(d / "C.csv", "i,j,value\n0,0,1\n0,1,nan\n"),
         "column value is empty or NaN in row 1"),
        (lambda d: _write(d / "C.csv", "i,j,cost\n0,0,1\n"),
         "a long cost matrix needs columns i, j, value; missing value (found: i, j, cost)"),
        (lambda d: _write(d / "C.csv", "i,j,value\n0,-1,1\n"),
         "negative index i=0, j=-1 in row 0; indices are 0-based"),
        (lambda d: _write(d / "C.csv", "i,j,value\n0.5,0,1\n"),
         "column i holds double, not 0-based integers"),
        (lambda d: np.save(d / "C.npy", np.array([[1.0, np.inf]])) or d / "C.npy",
         "non-finite cost inf at i=0, j=1 (0-based)"),
        (lambda d: np.save(d / "C.npy", np.ones(3)) or d / "C.npy",
         "holds an array of shape (3,); a cost matrix is 2-D (n rows × m columns)"),
        (lambda d: _write(d / "C.txt", "1 2\n"),
         "unknown cost-matrix type '.txt'; use .npy (dense n×m) or .parquet, .csv, .tsv "
         "(long format: columns i, j, value)"),
    ],
)  # fmt: skip
def test_bad_matrices_are_refused(capfd, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        read_cost_matrix(path)
    assert str(info.value) == f"{path}: {message}"
    code, out, err = otdist(capfd, "matrix", path)
    assert (code, out, err) == (2, "", f"Error: {path}: {message}\n")


def test_weights_that_do_not_fit_are_refused(capfd, pair):
    d, *_ = pair
    code, _, err = otdist(capfd, "matrix", d / "C.npy", "--b", d / "a.npy")
    assert code == 2
    assert err == f"Error: {d / 'a.npy'}: 14 weights for the 11 columns of {d / 'C.npy'}\n"
    np.save(d / "neg.npy", -np.ones(14))
    code, _, err = otdist(capfd, "matrix", d / "C.npy", "--a", d / "neg.npy")
    neg = "negative weight -1.0 at point 0 (0-based); masses must be ≥ 0"
    assert err == f"Error: {d / 'neg.npy'}: {neg}\n"


def test_a_matrix_over_the_memory_budget_is_refused_before_loading(capfd, tmp_path, monkeypatch):
    np.save(tmp_path / "C.npy", np.ones((300, 200)))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("loaded"))
    code, out, err = otdist(capfd, "matrix", tmp_path / "C.npy", "--memory", "400K",
                            "--coupling", tmp_path / "P.npy")  # fmt: skip
    assert (code, out) == (2, "")
    assert err == (
        f"Error: --memory: {tmp_path / 'C.npy'}: solving a 300×200 cost matrix needs 468.8 KiB "
        "(C and its kernel in float32), over the memory budget of 400.0 KiB\n"
    )
    assert not (tmp_path / "P.npy").exists()


def test_reach_and_divergence_are_not_matrix_options():
    """A matrix has no points: no reach (ρ is given directly), no self terms, no --cost."""
    from typer.main import get_command

    from otcli.cli import app

    options = {o for p in get_command(app).commands["matrix"].params for o in p.opts}
    assert {"--rho", "--rho-a", "--rho-b", "--a", "--b", "--coupling"} <= options
    assert not {"--reach", "--reach-a", "--divergence", "--cost", "--p", "--exact"} & options


# --- costs the working dtype cannot hold (issue 27) ------------------------------------------


def test_tiny_costs_are_refused_in_float32_and_solved_in_float64(capfd, tmp_path, rng):
    """Costs of about 1e-300 became all zeros in float32: otdist printed cost 0 with exit 0.
    Now float32 refuses them (exit 2, one line naming the fix) and float64 solves them: the
    cost of C × 1e-300 at ε × 1e-300 is 1e-300 × that of C at ε (POT, log domain)."""
    C = rng.random((6, 5)) + 0.5
    np.save(tmp_path / "C.npy", C * 1e-300)
    code, out, err = otdist(capfd, "matrix", tmp_path / "C.npy", "--eps", "1e-301")
    assert (code, out) == (2, "")
    assert err == (
        f"Error: {tmp_path / 'C.npy'}: costs of at most {C.max() * 1e-300:.3g} lose their digits "
        "in float32 (below 1.2e-35); use --dtype float64, or rescale the costs (multiply the "
        "matrix by a constant)\n"
    )
    code, out, err = otdist(capfd, "matrix", tmp_path / "C.npy", "--eps", "1e-301",
                            "--dtype", "float64", "--json")  # fmt: skip
    assert code == 0, err
    a, b = np.full(6, 1 / 6), np.full(5, 1 / 5)
    want = ot.sinkhorn2(a, b, C, 0.1, method="sinkhorn_log", stopThr=1e-13, numItermax=10**5)
    assert json.loads(out)["cost"] == pytest.approx(float(want) * 1e-300, rel=1e-6)


@pytest.mark.parametrize(
    ("scale", "dtype", "message"),
    [
        (1e-320, "float64", "costs of at most 1e-320 lose their digits in float64 (below "
         "2.3e-305); rescale the costs (multiply the matrix by a constant)"),
        (1e37, "float32", "costs up to 1e+37, beyond what float32 holds safely (3.1e+26); "
         "use dtype='float64', or rescale the costs (divide the matrix by a constant)"),
        (1e300, "float64", "costs up to 1e+300, beyond what float64 holds safely (1.6e+296); "
         "rescale the costs (divide the matrix by a constant)"),
    ],
)  # fmt: skip
def test_library_refuses_costs_out_of_the_dtypes_range(scale, dtype, message):
    """The library names its keyword (dtype='float64'), not the CLI's --dtype."""
    with pytest.raises(InputError) as info:
        solve_matrix(np.array([[1.0, 0.5], [0.0, 1.0]]) * scale, eps=1.0, dtype=dtype)
    assert str(info.value) == f"<array>: {message}"


@pytest.mark.parametrize(
    ("cost", "message"),
    [
        (np.array([[1, 2], [3, 4]], dtype=object), "<array>: costs are Python objects (an "
         "object array), not numbers; convert them first, e.g. with .astype(float)"),
        (np.array([[1, 2j], [3, 4]]), "<array>: costs are complex (complex128); otcli takes "
         "real numbers: pass .real, or the real and imaginary parts as two columns"),
        (np.array([[1.0, np.inf], [3, 4]]), "<array>: non-finite cost inf at i=0, j=1 (0-based)"),
    ],
)  # fmt: skip
def test_library_refuses_matrices_that_are_not_real_numbers(cost, message):
    with pytest.raises(InputError) as info:
        solve_matrix(cost)
    assert str(info.value) == message


def test_negative_costs_print_the_mean_cost_not_an_infinite_ratio(capfd, tmp_path):
    """ε as a fraction of a mean cost ≤ 0 means nothing: "(inf of the mean cost)" was printed;
    the line now gives the mean cost itself, and --eps-rel refuses such a matrix by name."""
    np.save(tmp_path / "C.npy", np.array([[-1.0, -2.0], [-3.0, -1.0]]))
    code, out, err = otdist(capfd, "matrix", tmp_path / "C.npy", "--eps", "1")
    assert code == 0, err
    assert "ε = 1 (the mean cost is -1.75)\n" in out
    code, out, err = otdist(capfd, "matrix", tmp_path / "C.npy", "--eps-rel", "0.1")
    assert (code, out) == (2, "")
    assert err == (
        "Error: --eps-rel: is a fraction of the pair's mean cost, which is -1.75 here (the "
        "clouds coincide, or the costs are not positive); give an absolute --eps instead\n"
    )


def test_an_existing_coupling_is_replaced_only_with_overwrite(capfd, pair):
    d, *_ = pair
    (d / "P.npy").write_bytes(b"mine")
    args = ("matrix", d / "C.npy", "--a", d / "a.npy", "--coupling", d / "P.npy", "-q")
    code, out, err = otdist(capfd, *args)
    assert (code, out) == (2, "")
    assert err == f"Error: --coupling: {str(d / 'P.npy')!r} exists; use --overwrite to replace it\n"
    assert (d / "P.npy").read_bytes() == b"mine"
    code, out, err = otdist(capfd, *args, "--overwrite")
    assert code == 0, err
    assert np.load(d / "P.npy").shape == (14, 11)


@pytest.mark.parametrize("target", ["C.npy", "a.npy"])
def test_an_input_is_never_the_coupling_even_with_overwrite(capfd, pair, target):
    d, *_ = pair
    before = (d / target).read_bytes()
    args = ("matrix", d / "C.npy", "--a", d / "a.npy", "--coupling", d / target, "--overwrite")
    code, out, err = otdist(capfd, *args)
    assert (code, out) == (2, "") and err.startswith("Error: --coupling: ")
    assert "an input is never overwritten" in err and err.count("\n") == 1
    assert (d / target).read_bytes() == before


def test_max_iter_defaults_as_for_a_pair_of_clouds():
    import typer

    from otcli.cli.app import app
    from otcli.config import DEFAULT_MAX_ITER

    group = typer.main.get_command(app)
    for name in ("matrix", "pair", "batch", "pairwise"):
        params = {p.name: p for p in group.commands[name].params}
        assert params["max_iter"].default == DEFAULT_MAX_ITER == 10_000, name


def test_no_fields_of_points_for_a_matrix(capfd, pair):
    """A matrix has no coordinates, columns or cloud files: its output shows none (was:
    "columns 0", "dim": 0, "columns": ["0"], "a": "a.npy")."""
    d, *_ = pair
    args = ("matrix", d / "C.npy", "--a", d / "a.npy")
    code, out, err = otdist(capfd, *args, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert not {"a", "b", "dim", "columns", "columns_b"} & set(got)
    assert (got["n"], got["m"], got["cost_fn"]) == (14, 11, f"matrix({d / 'C.npy'})")
    code, out, err = otdist(capfd, *args)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()] == [
        "cost", "objective", "iterations", "points", "device"
    ]  # fmt: skip
    assert "points      14 × 11 cost matrix\n" in out
    report = otcli.matrix.run_matrix(str(d / "C.npy"), otcli.make_config())
    assert repr(report).startswith("MatrixReport(n=14, m=11, cost=")
