"""The README's colour transfer: every pixel of a photograph moved onto another's colours.

    python docs/pictures/colour_transfer.py pixels            # the pixel files, here
    otdist map ...                                            # (the README's commands)
    python docs/pictures/colour_transfer.py picture OUT.png   # before / after

``pixels`` writes, in the current folder, the RGB colours (in [0, 1]) of every pixel of two
of scikit-image's bundled photographs, one row per pixel: ``astronaut.npy`` (512 × 512 =
262,144 rows) and ``coffee.npy`` (400 × 600 = 240,000 rows), and a sample of 4,000 pixels of
each (``astronaut_4k.npy``, ``coffee_4k.npy``, seed 0) to solve on. ``picture`` draws both
photographs beside ``astronaut_as_coffee.npy`` and ``coffee_as_astronaut.npy``, the moved
pixels ``otdist map`` wrote. Needs scikit-image (pixels) and matplotlib (picture).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SAMPLE = 4000


def _photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {"astronaut": data.astronaut(), "coffee": data.coffee()}


def pixels() -> None:
    rng = np.random.default_rng(0)
    for name, image in _photos().items():
        rgb = image.reshape(-1, 3).astype(np.float64) / 255.0  # (h·w, 3), row-major
        np.save(f"{name}.npy", rgb)
        np.save(f"{name}_4k.npy", rgb[rng.choice(len(rgb), SAMPLE, replace=False)])
        print(f"{name}.npy: {len(rgb):,} pixels of {image.shape[1]}×{image.shape[0]}")


def picture(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    photos = _photos()
    moved = {"astronaut": "astronaut_as_coffee.npy", "coffee": "coffee_as_astronaut.npy"}
    palette = {"astronaut": "coffee", "coffee": "astronaut"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.4), layout="constrained")
    for row, (name, image) in zip(axes, photos.items(), strict=True):
        after = np.load(moved[name], allow_pickle=False).reshape(image.shape)
        row[0].imshow(image)
        row[0].set_title(f"{name} ({image.shape[1]}×{image.shape[0]})")
        row[1].imshow(np.clip(after, 0.0, 1.0))
        row[1].set_title(f"{name}, every pixel moved onto {palette[name]}'s colours")
        for ax in row:
            ax.set_axis_off()
    fig.suptitle("otdist map: entropic transport of RGB colours (solved on 4,000 pixels each)")
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("pixels", "picture"):
        sys.exit(__doc__)
    if sys.argv[1] == "pixels":
        pixels()
    else:
        picture(Path(sys.argv[2]) if len(sys.argv) > 2 else Path("colour_transfer.png"))
