"""Write the small point clouds in ``sample_data/`` (deterministic: fixed seeds, numpy + pyarrow).

Run from the repository root::

    python scripts/make_sample_data.py            # writes sample_data/
    python scripts/make_sample_data.py OUT_DIR    # writes OUT_DIR/ instead

Files (see sample_data/README.md for commands to try on each):

- ``moons_a.csv``, ``moons_b.csv``: the seed article's moons, i.e. scikit-learn's
  ``make_moons(n_samples=30)`` without noise, class 0 (outer moon) and class 1 (inner moon),
  computed with the same formulas so the values are bit-for-bit scikit-learn's.
- ``line_a.csv``, ``line_b.csv``: the seed's line, x = (i, 0) and y = (i, 1) for i = 0..4.
- ``sphere.parquet`` / ``sphere.npy``: 400 points on a noisy unit sphere (the Parquet file also
  has a ``mass`` column of ones and a ``label`` column, the same schema as the torus).
- ``torus.parquet`` / ``torus.npz``: 500 points on a noisy torus with positive ``mass`` weights
  (the surface-area element, which corrects the uneven angle sampling) and a ``label`` column.
- ``cells_a.tsv``, ``cells_b.tsv``: a 5-D "embedding" of cells in two conditions (300 / 250 rows),
  an ``id`` text column first, then ``pc1`` .. ``pc5``.
- ``pairs.tsv``: a manifest for ``otdist batch`` (columns ``id``, ``a``, ``b``, ``eps``) over
  three of the pairs above, paths relative to its folder.

Binary outputs are written byte-for-byte reproducibly where the format allows it (the ``.npz``
archive gets fixed timestamps); Parquet files carry the writing pyarrow's version string.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240611
ROOT = Path(__file__).resolve().parent.parent

N_SPHERE = 400
N_TORUS = 500
N_CELLS_A = 300
N_CELLS_B = 250
TORUS_R = 1.0  # distance from the torus centre to the tube centre
TORUS_TUBE = 0.4  # tube radius


def moons() -> tuple[np.ndarray, np.ndarray]:
    """The two noiseless moons of ``sklearn.datasets.make_moons(n_samples=30)``, 15 points each."""
    t = np.linspace(0, np.pi, 15)
    outer = np.column_stack([np.cos(t), np.sin(t)])
    inner = np.column_stack([1 - np.cos(t), 1 - np.sin(t) - 0.5])
    return outer, inner


def line() -> tuple[np.ndarray, np.ndarray]:
    """The seed's line example: five points on y = 0 and the same five moved up by 1."""
    i = np.arange(5, dtype=np.float64)
    return np.column_stack([i, np.zeros(5)]), np.column_stack([i, np.ones(5)])


def sphere(rng: np.random.Generator) -> np.ndarray:
    """Uniform directions on the unit sphere, radius jittered by 2 %."""
    v = rng.standard_normal((N_SPHERE, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    radius = 1.0 + 0.02 * rng.standard_normal((N_SPHERE, 1))
    return v * radius


def torus(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on a torus sampled uniformly in its two angles, plus a little noise.

    Uniform angles put too many points on the inner side of the tube; the ``mass`` of each
    point is the surface-area element ``(R + r cos phi) / R``, which makes the weighted cloud a
    uniform sample of the surface. ``label`` says which side of the tube a point lies on.
    """
    theta = rng.uniform(0, 2 * np.pi, N_TORUS)  # around the z axis
    phi = rng.uniform(0, 2 * np.pi, N_TORUS)  # around the tube
    ring = TORUS_R + TORUS_TUBE * np.cos(phi)
    points = np.column_stack([ring * np.cos(theta), ring * np.sin(theta), TORUS_TUBE * np.sin(phi)])
    points += 0.01 * rng.standard_normal(points.shape)
    mass = ring / TORUS_R
    label = np.where(np.cos(phi) >= 0, "outer", "inner")
    return points, mass, label


def cells(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 5-D embedding of cells of three types in two conditions.

    The stimulated condition has a different mix of cell types and its third type has moved.
    """
    centres = np.array(
        [
            [-2.0, 0.5, 0.0, 0.3, -0.1],
            [1.5, 1.5, -0.5, 0.0, 0.2],
            [0.5, -2.0, 0.8, -0.4, 0.0],
        ]
    )
    spread = np.array([0.6, 0.5, 0.4, 0.3, 0.25])  # later components carry less variance
    shift = np.array([[0.0] * 5, [0.0] * 5, [0.8, 0.6, 0.0, 0.3, 0.0]])

    def condition(n: int, mix: list[float], moved: bool) -> np.ndarray:
        kind = rng.choice(3, size=n, p=mix)
        centre = centres[kind] + (shift[kind] if moved else 0.0)
        return centre + spread * rng.standard_normal((n, 5))

    return condition(N_CELLS_A, [0.5, 0.3, 0.2], False), condition(N_CELLS_B, [0.3, 0.3, 0.4], True)


def write_csv(path: Path, points: np.ndarray) -> None:
    """Header ``x,y``; each value as its shortest round-tripping repr (exact float64)."""
    lines = ["x,y"] + [",".join(repr(float(v)) for v in row) for row in points]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def write_tsv(path: Path, ids: list[str], points: np.ndarray) -> None:
    header = ["id"] + [f"pc{k + 1}" for k in range(points.shape[1])]
    lines = ["\t".join(header)]
    lines += [
        "\t".join([i] + [f"{v:.5f}" for v in row]) for i, row in zip(ids, points, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


#: ``otdist batch``'s manifest: id, the two clouds (relative to the manifest), ε (empty: --eps).
PAIRS = [
    ("moons", "moons_a.csv", "moons_b.csv", ""),
    ("line", "line_a.csv", "line_b.csv", "1"),
    ("sphere_torus", "sphere.npy", "torus.npz", ""),
]


def write_manifest(path: Path) -> None:
    lines = ["\t".join(row) for row in [("id", "a", "b", "eps"), *PAIRS]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def write_parquet(path: Path, points: np.ndarray, mass: np.ndarray, label: np.ndarray) -> None:
    table = pa.table(
        {
            "x": points[:, 0],
            "y": points[:, 1],
            "z": points[:, 2],
            "mass": mass.astype(np.float64),
            "label": pa.array(label.tolist(), type=pa.string()),
        }
    )
    pq.write_table(table, path, compression="zstd")


def write_npy(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with fixed timestamps, so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "sample_data"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    outer, inner = moons()
    write_csv(out / "moons_a.csv", outer)
    write_csv(out / "moons_b.csv", inner)

    a, b = line()
    write_csv(out / "line_a.csv", a)
    write_csv(out / "line_b.csv", b)

    ball = sphere(rng)
    sphere_label = np.where(ball[:, 2] >= 0, "north", "south")
    write_parquet(out / "sphere.parquet", ball, np.ones(N_SPHERE), sphere_label)
    write_npy(out / "sphere.npy", ball)

    donut, mass, donut_label = torus(rng)
    write_parquet(out / "torus.parquet", donut, mass, donut_label)
    write_npz(out / "torus.npz", points=donut, weights=mass)

    ctrl, stim = cells(rng)
    write_tsv(out / "cells_a.tsv", [f"ctrl_{k:04d}" for k in range(len(ctrl))], ctrl)
    write_tsv(out / "cells_b.tsv", [f"stim_{k:04d}" for k in range(len(stim))], stim)
    write_manifest(out / "pairs.tsv")

    print(f"wrote sample data to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
