"""Pictures (the optional extra ``otcli[plot]``): like render.py for rich, the only importer of
matplotlib.

- :func:`pair_figure`: one solved pair: clouds and transport, P and C as heat maps;
- :func:`pairwise_figure`: a pairwise matrix and a classical MDS map of the files;
- :func:`batch_figure`: histograms of a batch's costs and iterations;
- :func:`stored_figure`: whichever of these fits a file written earlier (``otdist show``).

Each returns a matplotlib ``Figure`` (drawn on the Agg canvas: no display, no pyplot) that
tests can inspect; :func:`save_figure` and :func:`figure_file` write it atomically like every
other output. Paths and the extra itself are checked with :func:`check_plot_path` before any
long work. This package imports matplotlib only inside the functions that draw.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otcli.errors import OptionError, OtcliError
from otcli.io.common import os_reason
from otcli.io.writers import atomic_write, check_output_path
from otcli.plot.common import DPI, check_dpi
from otcli.plot.many import batch_figure, classical_mds, matrix_figure, pairwise_figure
from otcli.plot.pair import DEFAULT_MAX_LINKS, pair_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from otcli.io.stored import DenseMatrix, LongMatrix, ResultTable

#: Picture formats, by extension.
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
INSTALL_HINT = "pip install 'otcli[plot]'"


def require_matplotlib(option: str = "--plot") -> None:
    """Refuse ``option`` with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OptionError(option, f"needs matplotlib, an optional extra: {INSTALL_HINT}") from None


def check_plot_path(path: str | os.PathLike[str], option: str = "--plot") -> Path:
    """Before any work: matplotlib is there, and ``path`` is a .png/.svg/.pdf we can write."""
    require_matplotlib(option)
    return check_output_path(path, option, PLOT_SUFFIXES)


def check_plot_options(
    max_links: int = DEFAULT_MAX_LINKS,
    size: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> None:
    """``--plot-max-links``, ``--plot-size`` and ``--plot-dpi`` (with the size it draws at)."""
    check_dpi(dpi, size)
    if max_links < 1:
        raise OptionError("--plot-max-links", f"must be ≥ 1, got {max_links}")
    if size is not None and not (0 < size[0] <= 100 and 0 < size[1] <= 100):
        raise OptionError("--plot-size", f"width and height are inches in (0, 100], got {size}")


@contextlib.contextmanager
def figure_file(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Iterator[Path]:
    """Draw ``fig`` into a temporary file beside ``path`` (a PNG at ``dpi`` dots per inch),
    renamed onto it when the ``with`` block ends without error: other outputs can be written
    inside, all or none."""
    final = Path(path)
    check_dpi(dpi, tuple(fig.get_size_inches()))
    with atomic_write(final) as tmp:
        try:
            if final.suffix.lower() == ".png":
                _save_png(fig, tmp, dpi)
            else:
                fig.savefig(
                    tmp, format=final.suffix.lower()[1:], metadata=_metadata(final), dpi=dpi
                )
        except OSError as exc:
            raise OtcliError(str(final), f"cannot write the picture ({os_reason(exc)})") from None
        yield final


def _save_png(fig: Figure, path: Path, dpi: int = DPI) -> None:
    """The Agg rendering as an opaque RGB PNG, compressed hard: a tenth smaller than
    matplotlib's RGBA file, the same pixels (the figure's background is opaque white)."""
    import numpy as np
    from PIL import Image, PngImagePlugin

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "otdist")
    Image.fromarray(rgba[..., :3]).save(
        path, format="PNG", optimize=True, pnginfo=info, dpi=(dpi, dpi)
    )


def _metadata(path: Path) -> dict[str, Any]:
    """Reproducible files: no creation date in PDF/SVG, otdist as the creator."""
    if path.suffix.lower() == ".pdf":
        return {"Creator": "otdist", "CreationDate": None}
    return {"Creator": "otdist", "Date": None}


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` (format by extension; a PNG at ``dpi``), atomically."""
    with figure_file(fig, path, dpi) as final:
        return final


def stored_figure(
    stored: DenseMatrix | LongMatrix | ResultTable,
    *,
    size: tuple[float, float] | None = None,
) -> Figure:
    """The picture of a file ``otdist show`` read: a pairwise matrix (labelled CSV or long
    table) with its MDS map, a batch table's histograms, or any matrix as a heat map."""
    from otcli.io.stored import DenseMatrix, ResultTable
    from otcli.plot.many import table_matrix

    if isinstance(stored, ResultTable):
        if stored.kind == "pairwise":
            matrix, labels, what = table_matrix(stored)
            return pairwise_figure(matrix, labels, what=what, size=size)
        return batch_figure(stored, size=size)
    if isinstance(stored, DenseMatrix) and stored.labels:
        # A labelled .csv holds cost or divergence alike, and does not say which.
        return pairwise_figure(stored.values, stored.labels, what="value", size=size)
    return matrix_figure(stored, size=size)


def pairwise_file_figure(
    path: str | os.PathLike[str],
    labels: list[str],
    *,
    what: str,
    size: tuple[float, float] | None = None,
) -> Figure:
    """The picture of a pairwise output just written (``.npy``, labelled ``.csv`` or long
    ``.parquet``); ``labels`` name the files of an ``.npy`` matrix."""
    from otcli.io.stored import ResultTable, read_stored
    from otcli.plot.many import table_matrix

    stored = read_stored(path)
    if isinstance(stored, ResultTable):
        matrix, names, _ = table_matrix(stored)
    else:
        matrix, names = stored.values, list(stored.labels) or labels  # type: ignore[union-attr]
    return pairwise_figure(matrix, names, what=what, size=size)


def batch_file_figure(
    path: str | os.PathLike[str], *, size: tuple[float, float] | None = None
) -> Figure:
    """The histograms of an ``otdist batch`` output just written."""
    from otcli.io.stored import ResultTable, read_stored

    stored = read_stored(path)
    if not isinstance(stored, ResultTable):
        raise OtcliError(str(path), "is not a batch output table")
    return batch_figure(stored, size=size)


__all__ = [
    "DEFAULT_MAX_LINKS",
    "DPI",
    "PLOT_SUFFIXES",
    "batch_figure",
    "batch_file_figure",
    "check_dpi",
    "check_plot_options",
    "check_plot_path",
    "classical_mds",
    "figure_file",
    "matrix_figure",
    "pair_figure",
    "pairwise_figure",
    "pairwise_file_figure",
    "require_matplotlib",
    "save_figure",
    "stored_figure",
]
