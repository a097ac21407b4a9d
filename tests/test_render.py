"""``otcli.render``: the summary's text, JSON that round-trips, and what goes to stderr.

Oracles: the numbers the summary and JSON were given (exact text, exact floats after a JSON
round trip), POT's log-domain Sinkhorn on the seed's line for a real result, and a forced
progress display for contrast with the silent ones (so "prints nothing" can fail).
"""

from __future__ import annotations

import json
import math
import sys
from types import SimpleNamespace

import numpy as np
import ot
import pytest

import otcli
from otcli.render import BatchProgress, SolveProgress, error, run_summary, summary, to_json, warning

FIELDS = {
    "a": "a.csv", "b": "b.csv", "cost": 0.123456789, "objective": -2.5, "eps": 0.05,
    "iterations": 412, "converged": True, "marginal_error": 3.2e-06, "tol": 1e-05, "n": 30,
    "m": 25, "dim": 2, "cost_fn": "sqeuclidean", "device": "cpu", "dtype": "float32",
    "geometry": "dense", "seconds": 0.01234,
}  # fmt: skip


def _strict_json(text: str) -> object:
    """json.loads that refuses NaN/Infinity, which Python's parser would otherwise accept."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# --- summary ------------------------------------------------------------------------------


def test_summary_lines_name_each_number():
    assert summary(FIELDS).splitlines() == [
        "cost        0.1234568   ⟨P, C⟩ with sqeuclidean cost, ε = 0.05",
        "objective   -2.5   OT_ε = ⟨P, C⟩ + ε KL(P‖a⊗b)",
        "iterations  412, converged (marginal error 3.20e-06, tol 1e-05)",
        "points      30 × 25 in 2-D",
        "device      cpu, float32, 0.0123 s",
    ]


def test_summary_divergence_and_not_converged():
    fields = {**FIELDS, "divergence": 0.0123456789, "converged": False, "iterations": 1000,
              "marginal_error": 2e-3, "cost_fn": "pnorm (p = 1.5)", "eps": 1e-3}  # fmt: skip
    lines = summary(fields).splitlines()
    assert lines[0] == "cost        0.1234568   ⟨P, C⟩ with pnorm (p = 1.5) cost, ε = 0.001"
    assert lines[2] == "divergence  0.01234568   debiased Sinkhorn divergence"
    assert lines[3] == "iterations  1000, NOT converged (marginal error 2.00e-03, tol 1e-05)"
    assert len(lines) == 6


def test_summary_of_a_real_result_matches_pot(line):
    """The seed's line at ε = 1: the printed cost is POT's ⟨P, C⟩ to the 7 digits shown."""
    x, y = line
    r = otcli.solve(x, y, eps=1.0, dtype="float64", device="cpu")
    u = np.full(5, 0.2)
    plan = ot.sinkhorn(u, u, ot.dist(x, y), 1.0, method="sinkhorn_log", stopThr=1e-14)
    expected = float((plan * ot.dist(x, y)).sum())
    text = summary(_fields(r))
    printed = float(text.splitlines()[0].split()[1])
    assert printed == pytest.approx(expected, rel=1e-6)
    assert printed == pytest.approx(1.4079, abs=5e-5)  # the seed's table
    assert "5 × 5 in 2-D" in text and "converged (" in text and "NOT" not in text


def _fields(r: otcli.SinkhornResult) -> dict[str, object]:
    """The fields ``otdist A B`` renders, from a result (as the CLI builds them)."""
    return {
        "a": "a.csv", "b": "b.csv", "cost": r.cost, "objective": r.objective, "eps": r.eps,
        "iterations": r.iterations, "converged": r.converged,
        "marginal_error": r.marginal_error, "tol": r.tol, "n": r.n, "m": r.m, "dim": r.dim,
        "cost_fn": r.cost_fn.describe(), "device": r.device, "dtype": r.dtype,
        "geometry": r.geometry, "seconds": r.seconds,
    }  # fmt: skip


# --- JSON -----------------------------------------------------------------------------------


def test_to_json_round_trips_the_same_numbers(line):
    x, y = line
    fields = _fields(otcli.solve(x, y + 0.37, eps=0.3, dtype="float64", device="cpu"))
    text = to_json(fields)
    assert "\n" not in text
    back = _strict_json(text)
    assert back == fields  # floats survive bit for bit, ints stay ints, bools stay bools
    assert all(type(back[k]) is type(v) for k, v in fields.items())


def test_to_json_non_finite_becomes_null_and_keeps_unicode():
    fields = {**FIELDS, "cost": math.nan, "objective": -math.inf, "divergence": math.inf,
              "cost_fn": "pnorm (p = 1.5) ε"}  # fmt: skip
    text = to_json(fields)
    back = _strict_json(text)
    assert back["cost"] is None and back["objective"] is None and back["divergence"] is None
    assert back["marginal_error"] == 3.2e-06 and back["iterations"] == 412
    assert "pnorm (p = 1.5) ε" in text  # not \u03b5-escaped


# --- stderr ---------------------------------------------------------------------------------


def test_error_and_warning_go_to_stderr_with_prefixes(capsys):
    error("--eps: must be > 0, got -1")
    warning("marginal error 2.00e-03 above --tol 1e-05")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "Error: --eps: must be > 0, got -1\nWarning: marginal error 2.00e-03 above --tol 1e-05\n"
    )


def test_error_is_one_literal_line_however_long(capsys):
    """No rich markup is interpreted and no wrapping happens, even past the console width."""
    message = "data/[red]x[/red].csv: " + "a long explanation " * 20
    error(message)
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"Error: {message}\n")


# --- progress -------------------------------------------------------------------------------


def _drive(solve: SolveProgress, batch: BatchProgress) -> None:
    for it in range(0, 200, 20):
        solve(it, 0.1 / (1 + it), 1.0 / (1 + it))
    solve.close()
    hook = batch.start(10, 3)
    hook(2, 1)
    hook(5, 0)
    batch.close()


@pytest.mark.parametrize("force", [None, False])
def test_progress_silent_when_not_forced_and_not_a_terminal(capsys, force):
    assert not sys.stderr.isatty()
    _drive(SolveProgress(force=force, delay=0.0), BatchProgress(force=force))
    assert capsys.readouterr() == ("", "")


def test_progress_forced_draws_on_stderr_only(capsys):
    """The contrast for the test above: with ``force`` the same calls do draw."""
    _drive(SolveProgress(force=True), BatchProgress(force=True))
    out, err = capsys.readouterr()
    assert out == ""
    # rich draws on start and once more on stop, with the last values; in between only its
    # 10 Hz refresh thread does, so only the final state is certain to appear.
    assert "iteration 180" in err
    assert "10/10" in err and "1 failed" in err


def _table_rows(text: str) -> dict[str, str]:
    """``│ what │ value │`` rows of a rich table as {what: value}."""
    cells = (line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│"))
    return {what.strip(): value.strip() for what, value in cells}


@pytest.mark.parametrize("skipped", [0, 4])
def test_run_summary_table_on_stderr(capsys, skipped):
    totals = SimpleNamespace(out="out.jsonl", total=12, ok=9, failed=3, not_converged=1,
                             skipped=skipped, seconds=2.5, pairs_per_second=4.8)  # fmt: skip
    run_summary(totals)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == "otdist: out.jsonl"
    expected = {"pairs": "12", "ok": "9", "failed": "3", "not converged": "1",
                "total time": "2.50 s", "pairs/s": "4.8"}  # fmt: skip
    if skipped:
        expected["already done (resumed)"] = "4"
    assert _table_rows(err) == expected


def test_progress_shows_stages_without_solver_callbacks(capsys):
    """Building C or measuring the plan makes no solver callbacks: the stage still shows."""
    bar = SolveProgress(force=True)
    bar.stage("building the cost matrix")
    bar.close()
    _, err = capsys.readouterr()
    assert "building the cost matrix" in err


def test_a_pair_run_reports_its_stages_in_order(tmp_path):
    import numpy as np

    from otcli.config import make_config
    from otcli.pair import PairOutputs, run_pair

    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.random((30, 2)))
    np.save(tmp_path / "b.npy", rng.random((20, 2)))

    class Recorder:
        def __init__(self):
            self.stages, self.calls = [], 0

        def stage(self, description):
            self.stages.append(description)

        def __call__(self, iteration, eps, err):
            self.calls += 1

    rec = Recorder()
    outputs = PairOutputs(coupling=tmp_path / "P.npy")
    a, b = str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    run_pair(a, b, make_config(device="cpu"), outputs=outputs, progress=rec)
    assert rec.stages == [
        f"reading {a}", f"reading {b}", "building the cost matrix", "solving",
        "measuring the plan", "writing the outputs",
    ]  # fmt: skip
    assert rec.calls > 0
