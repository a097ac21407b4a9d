"""``otdist batch``: many pairs in one run, bucketed, isolated failures, resumable.

Oracles: single-pair runs of the same engine (``otcli.solve`` and ``otdist A B``), the seed's
closed forms (a line shifted by k costs k²), POT's log-domain Sinkhorn; for resume, a real
``kill -9`` of a running ``python -m otcli batch`` subprocess and a clean run to compare with.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ot
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import otcli
from conftest import otdist
from otcli.batch import Engine, Problem, journal_path, plan_buckets, run_fingerprint
from otcli.cli import run
from otcli.config import ReadOptions, make_config

LINE_A = np.array([[i, 0.0] for i in range(5)])


def write_csv(path: Path, points: np.ndarray, header: str = "x,y") -> Path:
    lines = [header] + [",".join(repr(float(v)) for v in row) for row in points]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_manifest(path: Path, rows: list[dict[str, object]]) -> Path:
    """A manifest in the format its extension says, from a list of row dicts."""
    table = pa.Table.from_pylist(rows)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def read_out(path: Path) -> list[dict[str, object]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    ids_as_text = pacsv.ConvertOptions(column_types={"id": pa.string()})  # "01" is not 1
    return pacsv.read_csv(path, convert_options=ids_as_text).to_pylist()


def random_pairs(tmp_path: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k, (n, m) in enumerate(sizes):
        np.save(tmp_path / f"x{k}.npy", rng.random((n, 3)))
        np.save(tmp_path / f"y{k}.npy", rng.random((m, 3)) + 0.2)
        rows.append({"id": f"p{k}", "a": f"x{k}.npy", "b": f"y{k}.npy"})
    return rows


def assert_ok_row(row: dict[str, object], tol: float = 1e-5) -> None:
    assert row["status"] == "ok" and row["error"] is None, row
    assert row["converged"] is True and 0 <= row["marginal_error"] <= tol  # type: ignore[operator]
    assert row["iterations"] >= 1 and row["seconds"] >= 0  # type: ignore[operator]


REQUIRED = ["id", "a", "b", "n", "m", "eps", "cost", "objective", "iterations", "converged",
            "marginal_error", "status", "error", "seconds"]  # fmt: skip


# --- numbers ----------------------------------------------------------------------------------


def test_batch_equals_single_pair_results(capfd, tmp_path):
    sizes = [(7, 31), (40, 12), (25, 25), (60, 55), (3, 50), (33, 8)]
    rows = random_pairs(tmp_path, sizes)
    manifest = write_manifest(tmp_path / "pairs.csv", rows)
    code, out, err = otdist(capfd, "batch", manifest, "-o", tmp_path / "r.jsonl", "--eps", 0.05)
    assert code == 0, err
    assert out == ""
    got = read_out(tmp_path / "r.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    assert list(got[0]) == REQUIRED
    for k, row in enumerate(got):
        x, y = np.load(tmp_path / f"x{k}.npy"), np.load(tmp_path / f"y{k}.npy")
        single = otcli.solve(x, y, eps=0.05, device="cpu")
        assert_ok_row(row)
        assert (row["n"], row["m"], row["eps"]) == (*sizes[k], 0.05)
        assert row["cost"] == pytest.approx(single.cost, rel=2e-5)
        assert row["objective"] == pytest.approx(single.objective, rel=2e-5, abs=1e-6)
        a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
        plan = ot.sinkhorn(a, b, ot.dist(x, y), 0.05, method="sinkhorn_log", stopThr=1e-12,
                           numItermax=100000)  # fmt: skip
        assert row["cost"] == pytest.approx(float((plan * ot.dist(x, y)).sum()), rel=1e-4)


def test_one_batched_solve_of_different_sizes_equals_single_solves(rng):
    sizes = [(5, 40), (40, 5), (17, 23), (64, 64)]
    pairs = [(rng.random((n, 3)), rng.random((m, 3)) * 2) for n, m in sizes]
    engine = Engine.create(make_config(eps=0.05, device="cpu"))
    problems = [Problem(otcli.make_cloud(x), otcli.make_cloud(y), 0.05) for x, y in pairs]
    batched = engine.solve(problems)  # one padded batch, each problem with its own stop
    for (x, y), res in zip(pairs, batched, strict=True):
        single = otcli.solve(x, y, eps=0.05, device="cpu")
        assert res.cost == pytest.approx(single.cost, rel=2e-5)
        assert res.converged and res.marginal_error <= 1e-5


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_seed_shifts_give_k_squared(capfd, tmp_path, suffix):
    write_csv(tmp_path / "line.csv", LINE_A)
    rows = []
    for k in (1, 2, 3, 4):
        write_csv(tmp_path / f"shift{k}.csv", LINE_A + np.array([0.0, k]))
        rows.append({"a": "line.csv", "b": f"shift{k}.csv"})
    sub = tmp_path / "manifests"
    sub.mkdir()
    # Paths are relative to the manifest's folder, not to the working directory.
    for r in rows:
        r["a"], r["b"] = f"../{r['a']}", f"../{r['b']}"
    manifest = write_manifest(sub / f"m{suffix}", rows)
    out = tmp_path / f"r{suffix}"
    code, _, err = otdist(capfd, "batch", manifest, "-o", out, "--eps", 0.1)
    assert code == 0, err
    got = read_out(out)
    assert [r["id"] for r in got] == ["0", "1", "2", "3"]  # default: 0-based row numbers, as text
    assert [round(r["cost"], 3) for r in got] == [1, 4, 9, 16]


def test_per_row_eps_overrides_the_option(capfd, tmp_path):
    write_csv(tmp_path / "a.csv", LINE_A)
    write_csv(tmp_path / "b.csv", LINE_A + np.array([0.0, 1.0]))
    (tmp_path / "m.csv").write_text("id,a,b,eps\nlow,a.csv,b.csv,\nhigh,a.csv,b.csv,1.0\n")
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.parquet")
    assert code == 0, err
    got = {r["id"]: r for r in read_out(tmp_path / "r.parquet")}
    assert (got["low"]["eps"], round(got["low"]["cost"], 4)) == (0.1, 1.0001)  # the seed's table
    assert (got["high"]["eps"], round(got["high"]["cost"], 4)) == (1.0, 1.4079)


def test_divergence_column(capfd, tmp_path):
    write_csv(tmp_path / "a.csv", LINE_A)
    write_csv(tmp_path / "b.csv", LINE_A + np.array([0.0, 1.0]))
    (tmp_path / "m.csv").write_text("a,b\na.csv,b.csv\na.csv,a.csv\n")
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.csv",
                          "--divergence")  # fmt: skip
    assert code == 0, err
    got = read_out(tmp_path / "r.csv")
    assert got[0]["divergence"] == pytest.approx(1.0, abs=1e-4)  # debiased: W₂² = 1
    assert got[1]["divergence"] == pytest.approx(0.0, abs=1e-5)  # a cloud against itself
    code, out, _ = otdist(capfd, tmp_path / "a.csv", tmp_path / "b.csv", "--divergence", "--json")
    assert got[0]["divergence"] == pytest.approx(json.loads(out)["divergence"], abs=1e-6)


# --- failures ---------------------------------------------------------------------------------


def test_bad_pairs_are_isolated_with_the_single_pair_message(capfd, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    write_csv(tmp_path / "good.csv", rng.random((12, 2)))
    write_csv(tmp_path / "other.csv", rng.random((9, 2)))
    (tmp_path / "nan.csv").write_text("x,y\n0,1\nnan,2\n")
    (tmp_path / "text.csv").write_text("x,y\n0,1\n1,banana\n")
    write_csv(tmp_path / "three.csv", rng.random((4, 3)), header="x,y,z")
    rows = [
        {"id": "ok1", "a": "good.csv", "b": "other.csv"},
        {"id": "missing", "a": "good.csv", "b": "nope.csv"},
        {"id": "nan", "a": "nan.csv", "b": "good.csv"},
        {"id": "text", "a": "good.csv", "b": "text.csv"},
        {"id": "dims", "a": "good.csv", "b": "three.csv"},
        {"id": "ok2", "a": "other.csv", "b": "good.csv"},
    ]
    write_manifest(tmp_path / "m.csv", rows)
    monkeypatch.chdir(tmp_path)  # so the single-pair runs below name the files the same way
    code, out, err = otdist(capfd, "batch", "m.csv", "-o", "r.jsonl")
    assert (code, out) == (1, ""), err
    assert "Warning: 4 of 6 pairs failed (first: nope.csv: no such file; check the path)" in err
    got = {r["id"]: r for r in read_out(tmp_path / "r.jsonl")}
    for row in rows:
        r = got[row["id"]]
        single_code, single_out, single_err = otdist(capfd, row["a"], row["b"], "--quiet")
        if row["id"].startswith("ok"):
            assert_ok_row(r)
            assert r["cost"] == pytest.approx(float(single_out), rel=2e-5)
        else:
            assert r["status"] == "error" and r["cost"] is None
            assert single_code == 2 and single_err == f"Error: {r['error']}\n"
    assert got["missing"]["error"] == "nope.csv: no such file; check the path"
    assert got["dims"]["error"] == "three.csv: points have 3 coordinates but good.csv has 2"


def test_cost_specific_check_is_per_pair(capfd, tmp_path):
    write_csv(tmp_path / "a.csv", np.array([[1.0, 0.0], [0.0, 1.0]]))
    write_csv(tmp_path / "zero.csv", np.array([[0.0, 0.0], [1.0, 1.0]]))
    (tmp_path / "m.csv").write_text("a,b\na.csv,a.csv\na.csv,zero.csv\n")
    code, _, _ = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.jsonl",
                        "--cost", "cosine")  # fmt: skip
    assert code == 1
    got = read_out(tmp_path / "r.jsonl")
    assert got[0]["status"] == "ok"
    assert got[1]["error"] == (
        f"{tmp_path / 'zero.csv'}: point 0 (0-based) is the zero vector, which has no cosine distance"
    )


def test_costs_too_large_for_float32_fail_up_front_with_the_single_pair_message(
    capfd, tmp_path, monkeypatch
):
    """A pair whose float32 costs overflow is its own error row, found by the up-front check
    in the working dtype; the batched solve is told the pairs are checked (not twice)."""
    import otcli.api

    rng = np.random.default_rng(5)
    write_csv(tmp_path / "a.csv", rng.random((8, 2)))
    write_csv(tmp_path / "b.csv", rng.random((6, 2)))
    write_csv(tmp_path / "huge.csv", rng.random((5, 2)) * 1e20)  # costs ~1e40 > float32
    (tmp_path / "m.csv").write_text("id,a,b\nok,a.csv,b.csv\nbig,a.csv,huge.csv\n")
    real, seen = otcli.api.solve_clouds, []

    def spy(xs, ys, *args, **kw):
        seen.append(kw.get("checked"))
        return real(xs, ys, *args, **kw)

    monkeypatch.setattr(otcli.api, "solve_clouds", spy)
    monkeypatch.chdir(tmp_path)
    code, _, err = otdist(capfd, "batch", "m.csv", "-o", "r.jsonl")
    assert code == 1, err
    got = {r["id"]: r for r in read_out(tmp_path / "r.jsonl")}
    assert got["ok"]["status"] == "ok" and got["big"]["status"] == "error"
    single_code, _, single_err = otdist(capfd, "a.csv", "huge.csv")
    assert single_code == 2 and single_err == f"Error: {got['big']['error']}\n"
    assert "use --dtype float64" in got["big"]["error"]
    assert seen == [True]  # one bucket, the good pair only, not checked again


def test_solver_failure_in_a_bucket_fails_only_that_pair(capfd, tmp_path, monkeypatch):
    import otcli.api

    real = otcli.api.solve_clouds

    def flaky(xs, ys, *args, **kw):
        if any(x.source.endswith("x1.npy") for x in xs):
            raise otcli.api.SolverError(f"{xs[0].source}: the solver produced a non-finite result")
        return real(xs, ys, *args, **kw)

    monkeypatch.setattr(otcli.api, "solve_clouds", flaky)
    rows = random_pairs(tmp_path, [(10, 10)] * 4)
    write_manifest(tmp_path / "m.csv", rows)
    code, _, _ = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.jsonl")
    assert code == 1
    status = [r["status"] for r in read_out(tmp_path / "r.jsonl")]
    assert status == ["ok", "error", "ok", "ok"]


def test_fail_fast_stops_and_keeps_good_rows_for_resume(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(10, 10)] * 3)
    rows.insert(1, {"id": "bad", "a": "x0.npy", "b": "nope.npy"})
    write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "r.parquet"
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", out, "--fail-fast")
    assert code == 1
    assert err == f"Error: {tmp_path / 'nope.npy'}: no such file; check the path\n"
    assert not out.exists() and journal_path(out).exists()
    np.save(tmp_path / "nope.npy", np.random.default_rng(0).random((6, 3)))  # fix the data
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", out, "--resume")
    assert code == 0, err
    assert [r["status"] for r in read_out(out)] == ["ok"] * 4
    assert not journal_path(out).exists()


@pytest.mark.parametrize(
    ("manifest_text", "message"),
    [
        ("a,c\nx.npy,y.npy\n", "no column 'b'; a manifest needs columns a and b (paths) and may "
         "have id and eps (found: a, c)"),
        ("id,a,b\n1,x.npy,y.npy\n1,y.npy,x.npy\n", "duplicate id '1' in rows 0 and 1 (0-based, "
         "header excluded); ids must be unique"),
        ("a,b\nx.npy,\n", "row 0 (0-based, header excluded) has no path in column 'b'"),
    ],
)  # fmt: skip
def test_bad_manifest_is_a_usage_error(capfd, tmp_path, manifest_text, message):
    (tmp_path / "m.csv").write_text(manifest_text)
    code, out, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.csv")
    assert (code, out) == (2, "")
    assert err == f"Error: {tmp_path / 'm.csv'}: {message}\n"
    assert not (tmp_path / "r.csv").exists() and not journal_path(tmp_path / "r.csv").exists()


def test_bad_options_are_usage_errors(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(5, 5)])
    m = write_manifest(tmp_path / "m.csv", rows)
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.txt")
    assert code == 2
    assert err == (f"Error: -o: '{tmp_path / 'r.txt'}' has unsupported file type '.txt'; use "
                   "one of .parquet, .csv, .jsonl\n")  # fmt: skip
    code, _, err = otdist(capfd, "batch", tmp_path / "none.csv", "-o", tmp_path / "r.csv")
    assert (code, err) == (2, f"Error: {tmp_path / 'none.csv'}: no such file; check the path\n")
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.csv", "--eps", "-1")
    assert (code, err) == (2, "Error: --eps: ε must be a positive finite number, got -1.0\n")
    assert otdist(capfd, "batch", m, "-o", tmp_path / "r.csv")[0] == 0
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.csv")
    assert code == 2
    assert err == (f"Error: -o: '{tmp_path / 'r.csv'}' exists; use --resume to continue that "
                   "run or --overwrite to start again\n")  # fmt: skip
    assert otdist(capfd, "batch", m, "-o", tmp_path / "r.csv", "--overwrite")[0] == 0


# --- outputs ----------------------------------------------------------------------------------


def test_every_output_format_holds_the_same_rows(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(8, 13), (21, 5)])
    m = write_manifest(tmp_path / "m.parquet", rows)
    tables = {}
    for suffix in (".jsonl", ".csv", ".parquet"):
        code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / f"r{suffix}")
        assert code == 0, err
        tables[suffix] = read_out(tmp_path / f"r{suffix}")
    for suffix in (".csv", ".parquet"):
        for mine, ref in zip(tables[suffix], tables[".jsonl"], strict=True):
            assert list(mine) == REQUIRED
            assert mine["id"] == ref["id"] and mine["cost"] == pytest.approx(ref["cost"], rel=1e-6)


def test_coupling_dir(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(8, 13), (21, 5)])
    m = write_manifest(tmp_path / "m.csv", rows)
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.jsonl",
                          "--coupling-dir", tmp_path / "P")  # fmt: skip
    assert code == 0, err
    for k, row in enumerate(read_out(tmp_path / "r.jsonl")):
        plan = np.load(tmp_path / "P" / f"{row['id']}.npy")
        x, y = np.load(tmp_path / f"x{k}.npy"), np.load(tmp_path / f"y{k}.npy")
        assert plan.shape == (len(x), len(y))
        assert np.abs(plan.sum(1) - 1 / len(x)).sum() < 1e-4
        assert float((plan * ot.dist(x, y)).sum()) == pytest.approx(row["cost"], rel=1e-6)
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "s.jsonl",
                          "--coupling-dir", tmp_path / "Q", "--coupling-format", "parquet")  # fmt: skip
    assert code == 0, err
    assert set(pq.read_table(tmp_path / "Q" / "p0.parquet").column_names) == {"i", "j", "value"}


# --- resume -----------------------------------------------------------------------------------


def many_pairs(tmp_path: Path, count: int) -> Path:
    """``count`` pairs over 24 small clouds of different sizes (2-D, 6–40 points)."""
    rng = np.random.default_rng(11)
    for k in range(24):
        np.save(tmp_path / f"c{k}.npy", rng.random((int(rng.integers(6, 40)), 2)))
    rows = [
        {"id": f"r{i:04d}", "a": f"c{i % 24}.npy", "b": f"c{(7 * i + 5) % 24}.npy"}
        for i in range(count)
    ]
    return write_manifest(tmp_path / "many.csv", rows)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """The manifest and the costs of an uninterrupted run of it."""
    tmp = tmp_path_factory.mktemp("many")
    manifest = many_pairs(tmp, 240)
    assert run(["batch", str(manifest), "-o", str(tmp / "clean.jsonl")]) == 0
    return manifest, {r["id"]: r["cost"] for r in read_out(tmp / "clean.jsonl")}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_resume_after_kill_9_loses_and_duplicates_nothing(capfd, tmp_path, clean_run, suffix):
    manifest, clean = clean_run
    out = tmp_path / f"r{suffix}"
    journal = journal_path(out)
    cmd = [sys.executable, "-m", "otcli", "batch", str(manifest), "-o", str(out),
           "--max-batch", "2", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 4:  # header + some rows
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"finished before the kill: {stderr.decode()}"
    lines = journal.read_bytes().count(b"\n") - 1
    assert 0 < lines < len(clean), "kill should land mid-run"
    assert not out.exists()  # a killed run leaves no partial output
    code, _, err = otdist(capfd, "batch", manifest, "-o", out, "--resume")
    assert code == 0, err
    got = read_out(out)
    ids = [r["id"] for r in got]
    assert ids == sorted(clean) and len(set(ids)) == len(ids)  # each id once, manifest order
    for r in got:
        assert_ok_row(r)
        assert r["cost"] == pytest.approx(clean[r["id"]], rel=2e-5)
    assert not journal.exists()


def test_resume_drops_a_torn_last_line(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(6, 7), (8, 9), (10, 11)])
    m = write_manifest(tmp_path / "m.csv", rows)
    assert otdist(capfd, "batch", m, "-o", tmp_path / "full.jsonl")[0] == 0
    full = (tmp_path / "full.jsonl").read_text().splitlines()
    header = json.dumps(
        {"otcli_journal": 1, "settings": run_fingerprint(make_config(), ReadOptions(), False)}
    )
    out = tmp_path / "r.jsonl"
    journal_path(out).write_text(f"{header}\n{full[0]}\n{full[1][:40]}")  # torn mid-row
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 0, err
    got = read_out(out)
    assert [r["id"] for r in got] == ["p0", "p1", "p2"]
    assert got[0] == json.loads(full[0])  # kept from the journal, not solved again


def test_resume_refuses_other_options(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(6, 7)])
    m = write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "r.jsonl"
    header = {
        "otcli_journal": 1,
        "settings": run_fingerprint(make_config(eps=0.5), ReadOptions(), False),
    }
    journal_path(out).write_text(json.dumps(header) + "\n")
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 2
    assert err == (f"Error: --resume: '{journal_path(out)}' was written with --eps 0.5, not "
                   "--eps 0.1; resume with the same options, or start again with --overwrite\n")  # fmt: skip


def test_resume_a_finished_run_with_new_rows_scores_only_those(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(6, 7), (8, 9), (10, 11)])
    m = write_manifest(tmp_path / "m.csv", rows[:2])
    out = tmp_path / "r.parquet"
    assert otdist(capfd, "batch", m, "-o", out)[0] == 0
    before = read_out(out)
    write_manifest(tmp_path / "m.csv", rows)
    assert otdist(capfd, "batch", m, "-o", out, "--resume")[0] == 0
    after = read_out(out)
    assert [r["id"] for r in after] == ["p0", "p1", "p2"]
    assert after[:2] == before  # kept as they were, not recomputed


# --- engine pieces ----------------------------------------------------------------------------


def test_plan_buckets_covers_every_problem_once_within_the_caps():
    rng = np.random.default_rng(5)
    shapes = [tuple(int(s) for s in rng.integers(100, 501, 2)) for _ in range(500)]
    shapes.append((3000, 3000))  # bigger than a work unit on its own
    buckets = plan_buckets(shapes, max_entries=4_000_000, max_batch=32)
    assert sorted(k for b in buckets for k in b) == list(range(len(shapes)))
    real = padded = 0
    for b in buckets:
        n_max = max(shapes[k][0] for k in b)
        m_max = max(shapes[k][1] for k in b)
        assert len(b) <= 32
        assert len(b) == 1 or len(b) * n_max * m_max <= 4_000_000
        real += sum(shapes[k][0] * shapes[k][1] for k in b)
        padded += len(b) * n_max * m_max
    assert padded <= 1.5 * real  # sorting by size keeps padding small
    assert [500] in buckets


def test_help_for_each_command(capfd):
    for command in ("batch", "pairwise"):
        code, out, _ = otdist(capfd, command, "--help")
        assert code == 0 and "--output" in out


# --- hostile runs (issue 16): any failure is a row, ids are text, resume is checked ----------


def line_and_shifts(tmp_path: Path, shifts: tuple[int, ...] = (1, 2)) -> None:
    """line.csv and s<k>.csv, the line shifted by k: cost k² (the seed's table)."""
    write_csv(tmp_path / "line.csv", LINE_A)
    for k in shifts:
        write_csv(tmp_path / f"s{k}.csv", LINE_A + np.array([0.0, k]))


def test_any_exception_of_one_pair_is_its_error_row_and_resume_goes_on(
    capfd, tmp_path, monkeypatch
):
    import otcli.api
    from otcli.batch import engine

    real_solve, real_check = otcli.api.solve_clouds, engine.Engine.check_pair

    def overflow(xs, ys, *args, **kw):  # what 1e20 coordinates or ε = 5e-324 raised
        if any(x.source.endswith("x1.npy") for x in xs):
            raise OverflowError("cannot convert float infinity to integer")
        return real_solve(xs, ys, *args, **kw)

    def zero_division(self, x, y):
        if x.source.endswith("x2.npy"):
            raise ZeroDivisionError("float division by zero")
        return real_check(self, x, y)

    monkeypatch.setattr(otcli.api, "solve_clouds", overflow)
    monkeypatch.setattr(engine.Engine, "check_pair", zero_division)
    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(10, 10)] * 4))
    out = tmp_path / "r.jsonl"
    for extra in ([], ["--resume"]):  # the resumed run retries both, and fails them the same
        code, stdout, err = otdist(capfd, "batch", m, "-o", out, *extra)
        assert (code, stdout) == (1, ""), err
        assert "Traceback" not in err
        got = read_out(out)
        assert [r["status"] for r in got] == ["ok", "error", "error", "ok"]
        assert got[1]["error"] == (
            f"{tmp_path / 'x1.npy'} vs {tmp_path / 'y1.npy'}: the pair could not be solved "
            "(OverflowError: cannot convert float infinity to integer)"
        )
        assert got[2]["error"] == (
            f"{tmp_path / 'x2.npy'} vs {tmp_path / 'y2.npy'}: the pair could not be solved "
            "(ZeroDivisionError: float division by zero)"
        )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_ids_are_text_so_1_and_01_stay_two_pairs_through_resume(capfd, tmp_path, suffix):
    line_and_shifts(tmp_path)
    m = tmp_path / "m.csv"
    m.write_text("id,a,b\n1,line.csv,s1.csv\n01,line.csv,s2.csv\n")
    out = tmp_path / f"r{suffix}"
    code, _, err = otdist(capfd, "batch", m, "-o", out)
    for _ in range(2):  # the finished run, then a resume from it (journal gone)
        assert code == 0, err
        got = {r["id"]: round(r["cost"], 3) for r in read_out(out)}
        assert got == {"1": 1.0, "01": 4.0}  # was, from .csv: {"1": 4.0, "01": 4.0}
        code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 0, err


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_resume_from_a_finished_output_refuses_changed_options(capfd, tmp_path, suffix):
    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(6, 7), (8, 9)]))
    out = tmp_path / f"r{suffix}"
    assert otdist(capfd, "batch", m, "-o", out, "--eps", 10)[0] == 0
    before = out.read_bytes()
    code, stdout, err = otdist(capfd, "batch", m, "-o", out, "--eps", 1, "--resume")
    assert (code, stdout) == (2, "")
    assert err == (f"Error: --resume: '{out}' was written with --eps 10.0, not --eps 1.0; "
                   "resume with the same options, or start again with --overwrite\n")  # fmt: skip
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--eps", 10, "--dtype", "float64",
                          "--resume")  # fmt: skip
    assert code == 2 and "written with --dtype float32, not --dtype float64;" in err
    assert out.read_bytes() == before and not journal_path(out).exists()
    assert otdist(capfd, "batch", m, "-o", out, "--eps", 10, "--resume")[0] == 0
    assert out.read_bytes() == before  # nothing left to do: the same rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_from_an_output_changed_since_is_refused(capfd, tmp_path, suffix):
    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(6, 7)]))
    out = tmp_path / f"r{suffix}"
    assert otdist(capfd, "batch", m, "-o", out)[0] == 0
    with out.open("a") as fh:
        fh.write(out.read_text().splitlines()[-1] + "\n")  # someone edited it
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 2
    assert err == (f"Error: --resume: cannot tell which options wrote '{out}': it was changed "
                   f"after otdist wrote it (see '{out}.settings.json'); start again with "
                   "--overwrite\n")  # fmt: skip


def test_resume_solves_again_a_row_whose_pair_changed(capfd, tmp_path):
    line_and_shifts(tmp_path)
    m = tmp_path / "m.csv"
    m.write_text("id,a,b,eps\nfirst,line.csv,s1.csv,\nsecond,line.csv,s1.csv,0.1\n")
    out = tmp_path / "r.parquet"
    assert otdist(capfd, "batch", m, "-o", out)[0] == 0
    m.write_text("id,a,b,eps\nfirst,line.csv,s2.csv,\nsecond,line.csv,s1.csv,1.0\n")
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 0, err
    got = {r["id"]: (r["b"], r["eps"], round(r["cost"], 4)) for r in read_out(out)}
    # was: the old rows kept under the new pairs ("first" cost 1.0001 for s2.csv)
    assert got == {"first": ("s2.csv", 0.1, 4.0001), "second": ("s1.csv", 1.0, 1.4079)}


def test_bad_eps_cells_fail_their_rows_instead_of_falling_back(capfd, tmp_path):
    line_and_shifts(tmp_path, (1,))
    m = tmp_path / "m.csv"
    # Python's float() reads "1_0" as 10 and "١" (Arabic-Indic one) as 1: not ε cells either
    rows = ["", "nan", "NA", "big", "-1", "inf", "1_0", "١", "0x10", "0.5", " 5e-1 "]
    m.write_text(
        "id,a,b,eps\n" + "".join(f"r{k},line.csv,s1.csv,{v}\n" for k, v in enumerate(rows))
    )
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.jsonl")
    assert code == 1, err
    got = read_out(tmp_path / "r.jsonl")
    assert [r["status"] for r in got] == ["ok", *["error"] * 8, "ok", "ok"]
    assert [r["eps"] for r in got] == [0.1, *[None] * 8, 0.5, 0.5]
    for k in range(1, 9):
        assert got[k]["error"] == (
            f"{m}: row {k} (0-based, header excluded): eps {rows[k]!r} is not a positive finite "
            "number; give one, or leave the cell empty to use --eps"
        )


def test_the_output_never_replaces_the_manifest_or_an_input(capfd, tmp_path):
    rows = random_pairs(tmp_path, [(6, 7)])
    m = write_manifest(tmp_path / "m.csv", rows)
    before = m.read_bytes()
    code, _, err = otdist(capfd, "batch", m, "-o", m, "--overwrite")
    assert code == 2
    assert err == (f"Error: -o: '{m}' is the input file '{m}'; an input is never overwritten: "
                   "write the output under another name\n")  # fmt: skip
    assert m.read_bytes() == before
    # DIR/<id>.npy of --coupling-dir: here "x0" would replace the input x0.npy
    write_manifest(m, [{"id": "x0", "a": "x0.npy", "b": "y0.npy"}])
    x0 = (tmp_path / "x0.npy").read_bytes()
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.csv", "--coupling-dir", tmp_path,
                          "--overwrite")  # fmt: skip
    assert code == 2 and err.startswith(
        f"Error: --coupling-dir: '{tmp_path / 'x0.npy'}' is the input file '{tmp_path / 'x0.npy'}'"
    )
    assert (tmp_path / "x0.npy").read_bytes() == x0


def test_existing_coupling_files_need_overwrite(capfd, tmp_path):
    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(6, 7)]))
    (tmp_path / "P").mkdir()
    (tmp_path / "P" / "p0.npy").write_bytes(b"keep me")
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.csv", "--coupling-dir",
                          tmp_path / "P")  # fmt: skip
    assert code == 2
    assert err == (f"Error: --coupling-dir: '{tmp_path / 'P' / 'p0.npy'}' exists; use "
                   "--overwrite to replace it\n")  # fmt: skip
    assert (tmp_path / "P" / "p0.npy").read_bytes() == b"keep me"
    code, _, err = otdist(capfd, "batch", m, "-o", tmp_path / "r.csv", "--coupling-dir",
                          tmp_path / "P", "--overwrite")  # fmt: skip
    assert code == 0, err
    assert np.load(tmp_path / "P" / "p0.npy").shape == (6, 7)


def test_a_journal_line_that_is_not_an_object_is_one_error_line(capfd, tmp_path):
    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(6, 7)]))
    out = tmp_path / "r.jsonl"
    header = {"otcli_journal": 1, "settings": run_fingerprint(make_config(), ReadOptions(), False)}
    journal_path(out).write_text(json.dumps(header) + "\n[1, 2]\n")
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 2  # was: AttributeError: 'list' object has no attribute 'get'
    assert err == (f"Error: {journal_path(out)}: line 2 is not a JSON object; the file is "
                   "damaged: rerun with --overwrite\n")  # fmt: skip


def test_an_out_name_too_long_for_its_journal_is_refused_before_any_work(capfd, tmp_path):
    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(6, 7)]))
    out = tmp_path / ("r" * 240 + ".csv")  # 244 bytes: fine alone, not with .journal.jsonl
    code, _, err = otdist(capfd, "batch", m, "-o", out)
    assert code == 2  # was: OSError [Errno 36] File name too long, a traceback
    assert err == (
        f"Error: -o: '{out}' is too long a name: the name of its companion file "
        f"'{out.name}.journal.jsonl' has 258 bytes, over the file system's limit of 255; use a "
        "shorter name\n"
    )


def test_a_full_disk_is_one_error_line_and_the_journal_stays_resumable(capfd, tmp_path):
    import resource

    m = write_manifest(tmp_path / "m.csv", random_pairs(tmp_path, [(5, 6)] * 24))
    out = tmp_path / "r.jsonl"

    def small_files() -> None:  # `ulimit -f 4`: the journal outgrows it after a few buckets
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run(
        [sys.executable, "-m", "otcli", "batch", str(m), "-o", str(out), "--max-batch", "2",
         "--device", "cpu"],
        preexec_fn=small_files, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # was: OSError: File too large, a traceback
    assert proc.stderr == (
        f"Error: {journal_path(out)}: cannot write the journal (File too large); the pairs it "
        "holds are kept: make room and rerun with --resume\n"
    )
    assert not out.exists()
    kept = journal_path(out).read_text().splitlines()  # whole lines only, cut back after the fault
    assert 1 < len(kept) < 25 and all(isinstance(json.loads(line), dict) for line in kept)
    code, _, err = otdist(capfd, "batch", m, "-o", out, "--resume")
    assert code == 0, err
    got = read_out(out)
    assert [r["id"] for r in got] == [f"p{k}" for k in range(24)]
    for r in got:
        assert_ok_row(r)


def test_max_batch_1_makes_each_pair_independent_of_the_others(capfd, tmp_path):
    """Reproducibility (item 12): in a shared bucket a pair's numbers may move within --tol
    with its bucket mates (annealing stages advance together); with --max-batch 1 each pair
    is its own solve, so any subset of the manifest (a resume) gives the same bits."""
    rows = random_pairs(tmp_path, [(12, 15), (14, 13), (13, 12), (15, 14), (12, 12), (13, 15)])
    full = write_manifest(tmp_path / "full.csv", rows)
    part = write_manifest(tmp_path / "part.csv", rows[1::2])
    costs = {}
    for m in (full, part):
        out = tmp_path / f"{m.stem}.jsonl"
        code, _, err = otdist(capfd, "batch", m, "-o", out, "--max-batch", 1, "--eps", 0.01)
        assert code == 0, err
        costs[m.stem] = {
            r["id"]: (r["cost"], r["objective"], r["iterations"]) for r in read_out(out)
        }
    assert costs["part"] == {k: costs["full"][k] for k in costs["part"]}


def test_a_second_run_on_the_same_output_is_refused(capfd, tmp_path):
    """While one run holds OUT (as ``otdist batch`` does from its journal's opening to OUT's
    rename), another one on the same OUT, --resume or --overwrite alike, is refused at once:
    two writers interleaved journal lines and lost every scored row."""
    from otcli.batch.lock import lock_path, output_lock

    rng = np.random.default_rng(8)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", rng.random((6, 2)))
    (tmp_path / "m.csv").write_text("a,b\na.npy,b.npy\n")
    out = tmp_path / "r.parquet"
    with output_lock(out):
        assert lock_path(out).read_text() == str(os.getpid())
        for extra in ((), ("--resume",), ("--overwrite",)):
            code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", out, *extra)
            assert code == 2
            assert "is being written by another otdist run" in err and str(os.getpid()) in err
            assert not out.exists()
    assert not lock_path(out).exists()
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", out)
    assert code == 0, err
    assert out.exists() and not lock_path(out).exists()


def test_failed_and_unconverged_pairs_are_both_told(capfd, tmp_path):
    rng = np.random.default_rng(5)
    write_csv(tmp_path / "a.csv", rng.random((12, 2)))
    write_csv(tmp_path / "b.csv", rng.random((9, 2)))
    rows = [
        {"id": "p0", "a": "a.csv", "b": "b.csv"},
        {"id": "p1", "a": "b.csv", "b": "a.csv"},
        {"id": "p2", "a": "a.csv", "b": "a.csv"},
        {"id": "gone", "a": "a.csv", "b": "nope.csv"},
    ]
    write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "r.csv"
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", out, "--max-iter", 2)
    assert code == 1
    assert err == (
        f"Warning: 1 of 4 pairs failed (first: {tmp_path / 'nope.csv'}: no such file; check the "
        f"path); see the status and error columns of {out}\n"
        "Warning: 3 of 4 pairs did not converge to --tol; see the converged and "
        f"marginal_error columns of {out}\n"
    )  # was: the failure only
