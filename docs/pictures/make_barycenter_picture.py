"""Draw docs/pictures/barycenter.png: barycenters of sample_data's two moons (needs
otcli[plot]).

Left: the two clouds and their barycenter (K = 15, ε = 0.01), debiased (the README's
``otdist barycenter ... --divergence``) and plain (shrunk by the entropy). Right: the
debiased barycenters for weights (1 − t, t), t = 0, ¼, ½, ¾, 1, each started from the
previous one (``init=``), so that each support point's path from one moon to the other
can be drawn. (The moons' optimal matching has ties: the two ½ barycenters differ, with
the same objective.)

    python docs/pictures/make_barycenter_picture.py [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import otcli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("barycenter.png")
    a, b = (otcli.read_cloud(str(ROOT / "sample_data" / f"moons_{s}.csv")) for s in "ab")
    debiased = otcli.barycenter([a, b], points=15, eps=0.01, divergence=True)
    plain = otcli.barycenter([a, b], points=15, eps=0.01)
    path, start = [], a.points
    for t in STEPS:
        r = otcli.barycenter([a, b], [1 - t, t], init=start, eps=0.01, divergence=True)
        path.append(r.points)
        start = r.points
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    left, right = axes
    left.scatter(*a.points.T, s=30, c="tab:blue", label="moons_a.csv")
    left.scatter(*b.points.T, s=30, c="tab:orange", label="moons_b.csv")
    left.scatter(*plain.points.T, s=40, marker="x", c="0.45", label="barycenter, OT_ε")
    left.scatter(*debiased.points.T, s=70, marker="*", c="k", label="barycenter, S_ε (debiased)")
    left.set_title(
        f"K = 15, ε = 0.01: S_ε objective {debiased.objective:.4f}, "
        f"{debiased.iterations} iterations"
    )
    left.legend(loc="upper right", fontsize=8)
    stack = np.stack(path)  # (steps, K, 2)
    for k in range(stack.shape[1]):
        right.plot(stack[:, k, 0], stack[:, k, 1], c="0.75", lw=0.8, zorder=0)
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(STEPS)))
    for t, points, colour in zip(STEPS, path, colours, strict=True):
        right.scatter(*points.T, s=30, color=colour, label=f"w = ({1 - t:g}, {t:g})")
    right.set_title("S_ε barycenters for weights (1 − t, t), each from the last")
    right.legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlim(-1.3, 2.6)
        ax.set_ylim(-0.8, 1.7)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
