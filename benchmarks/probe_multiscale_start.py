"""How the multiscale fine level's start behaves on structured data: iterations of two trees.

Run on demand (not part of the tests), e.g. to compare this tree with an older checkout:

    python benchmarks/probe_multiscale_start.py --old /tmp/headtree/src
    python benchmarks/probe_multiscale_start.py --old /tmp/headtree/src --cases moons swiss

Each case (scikit-learn's bundled datasets and generators, scikit-image's photographs'
pixels, points on a line or a shell, a cloud against a shifted copy of itself; weights,
unbalanced, coordinate costs, float32) is solved with ``geometry="multiscale"`` by this tree
(``src`` next to this file) and by ``--old``, each in a child process with that ``PYTHONPATH``,
and by this tree's ``geometry="online"`` as the oracle. :data:`otcli.multiscale.COARSE_POINTS`
is patched small (``--coarse``) so that the coarse level is really coarse at these sizes.

Printed per case: ε, dtype, tol, iterations old → new (the multiscale result's iterations are
the fine level's), the coarse level's iterations, converged old/new, the online oracle's
iterations and the relative cost difference new vs online. Iteration counts do not depend on
the machine's load; no times are printed. A row is flagged ``REG`` where the new tree takes
over 20% more iterations than the old, or converged before and does not now.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

#: name -> (data, solve options); n points per cloud unless the data fixes it.
CASES: dict[str, tuple[str, dict]] = {
    "wine": ("wine", {"eps_rel": 0.01, "coarse": 8}),
    "cancer": ("cancer", {"eps_rel": 1e-3, "coarse": 32}),
    "swiss": ("swiss", {"eps_rel": 0.01}),
    "swiss-1e-3": ("swiss", {"eps_rel": 1e-3}),
    "swiss-f32": ("swiss", {"eps_rel": 1e-3, "dtype": "float32", "tol": 1e-5}),
    "blobs": ("blobs", {"eps_rel": 0.01}),
    "blobs-1e-3": ("blobs", {"eps_rel": 1e-3}),
    "moons": ("moons", {"eps_rel": 1e-3}),
    "moons-tol5": ("moons", {"eps_rel": 1e-3, "tol": 1e-5}),
    "moons-cityblock": ("moons", {"eps_rel": 1e-3, "cost": "cityblock"}),
    "pixels": ("pixels", {"eps_rel": 1e-3}),
    "pixels-f32": ("pixels", {"eps_rel": 1e-3, "dtype": "float32", "tol": 1e-5}),
    "line": ("line", {"eps_rel": 1e-3}),
    "shell": ("shell", {"eps_rel": 1e-3}),
    "shift": ("shift", {"eps_rel": 1e-3}),
    "swiss-reach": ("swiss", {"eps_rel": 1e-3, "reach": 1.0}),
    "weights-skewed": ("skewed", {"eps_rel": 1e-3}),
    "blobs-pnorm": ("blobs", {"eps_rel": 1e-3, "cost": "pnorm", "p": 1.5}),
}


def clouds(data: str, n: int):
    """(x, y, a, b) for one case: a and b None for uniform weights."""
    import numpy as np
    from sklearn import datasets

    rng = np.random.default_rng(0)
    if data in ("wine", "cancer"):
        bunch = datasets.load_wine() if data == "wine" else datasets.load_breast_cancer()
        first = bunch.target == 0
        return bunch.data[first], bunch.data[~first], None, None
    if data == "swiss":
        x, _ = datasets.make_swiss_roll(n, noise=0.1, random_state=1)
        y, _ = datasets.make_swiss_roll(n - 300, noise=0.1, random_state=2)
        return x, y + 0.5, None, None
    if data in ("blobs", "skewed"):  # very unequal cluster sizes, mirrored
        x, _ = datasets.make_blobs([n - 200, 150, 50], n_features=3, random_state=1)
        y, _ = datasets.make_blobs([50, 150, n - 200], n_features=3, random_state=1)
        if data == "blobs":
            return x, y, None, None
        return x, y, rng.pareto(0.8, n) + 1e-6, rng.lognormal(0, 3, n)
    if data == "moons":
        x, _ = datasets.make_moons(n, noise=0.05, random_state=1)
        y, _ = datasets.make_moons(n, noise=0.05, random_state=2)
        return x, y @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + 0.3, None, None
    if data == "pixels":  # many exact duplicate colours
        from skimage import data as images

        def sample(img: np.ndarray, seed: int) -> np.ndarray:
            p = img[..., :3].reshape(-1, 3).astype(np.float64) / 255.0
            return p[np.random.default_rng(seed).choice(len(p), n, replace=False)]

        return sample(images.chelsea(), 1), sample(images.rocket(), 2), None, None
    if data == "line":
        t, s = rng.random(n), rng.random(n - 400)

        def on_line(t: np.ndarray) -> np.ndarray:
            return np.stack([3 * t, 1 - t, 0.5 * t], 1) + 0.01 * rng.standard_normal((len(t), 3))

        return on_line(t), on_line(s) + 0.1, None, None
    if data == "shell":
        v, w = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
        unit = np.linalg.norm
        return (
            v / unit(v, axis=1, keepdims=True),
            1.5 * w / unit(w, axis=1, keepdims=True),
            None,
            None,
        )
    if data == "shift":
        x, _ = datasets.make_swiss_roll(n, noise=0.2, random_state=3)
        return x, x + np.array([2.0, 0.0, 0.0]), None, None
    raise KeyError(data)


def child(case: str, n: int, coarse: int, geometries: list[str]) -> None:
    """Solve one case with the otcli on sys.path; print one JSON object."""
    import torch

    import otcli
    from otcli import multiscale

    torch.set_num_threads(1)
    data, opts = CASES[case]
    opts = {"dtype": "float64", **opts}
    multiscale.COARSE_POINTS = opts.pop("coarse", coarse)
    x, y, a, b = clouds(data, n)
    out = {}
    for geometry in geometries:
        r = otcli.solve(x, y, a, b, geometry=geometry, **opts)
        out[geometry] = {
            "it": int(r.iterations), "converged": bool(r.converged), "cost": float(r.cost),
            "eps": float(r.eps), "tol": float(r.tol), "engine": r.engine,
        }  # fmt: skip
    print(json.dumps(out))


def run(src: str, case: str, n: int, coarse: int, geometries: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    cmd = [sys.executable, __file__, "--child", case, "--n", str(n), "--coarse", str(coarse)]
    done = subprocess.run(
        [*cmd, *geometries], stdout=subprocess.PIPE, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="src folder of the tree to compare with (required)")
    parser.add_argument("--cases", nargs="*", default=sorted(CASES), choices=sorted(CASES))
    parser.add_argument("--n", type=int, default=3000, help="points per cloud")
    parser.add_argument("--coarse", type=int, default=256, help="COARSE_POINTS to patch in")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("geometries", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.coarse, args.geometries)
        return
    if args.old is None:
        parser.error("--old is required")
    new_src = str(Path(__file__).resolve().parents[1] / "src")
    print("| case | ε | dtype | tol | its old → new | conv old/new | online its | rel vs online |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        new = run(new_src, case, args.n, args.coarse, ["multiscale", "online"])
        old = run(args.old, case, args.n, args.coarse, ["multiscale"])["multiscale"]
        ms, online = new["multiscale"], new["online"]
        flag = (
            " REG"
            if ms["it"] > 1.2 * old["it"] or (old["converged"] and not ms["converged"])
            else ""
        )
        rel = abs(ms["cost"] - online["cost"]) / abs(online["cost"])
        dtype = CASES[case][1].get("dtype", "float64")
        print(
            f"| {case} ({ms['engine']}) | {ms['eps']:.3g} | {dtype} | {ms['tol']:.0e} | "
            f"{old['it']} → {ms['it']}{flag} | {old['converged']}/{ms['converged']} | "
            f"{online['it']} | {rel:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
