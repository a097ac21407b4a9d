"""Arrow arrays built from buffers (``otcli.io.common.arrow_array``) equal pyarrow's own.

otcli builds its output columns from buffers because ``pyarrow.array`` imports pandas
(130 ms per run); the oracle here is ``pyarrow.array`` itself, and a subprocess shows that a
batch run writing Parquet no longer imports pandas.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from otcli.io.common import arrow_array

CASES = [
    (pa.int64(), [1, None, -3, 2**62]),
    (pa.float64(), [0.5, None, float("nan"), -1e300]),
    (pa.bool_(), [True, None, False, True, True, False, True, False, True]),
    (pa.string(), ["a", None, "", "ε→∞", "x\\xff", "日本"]),
    (pa.string(), []),
    (pa.float64(), np.array([1.5, 2.5, -0.0])),
    (pa.int64(), np.arange(10, dtype=np.int64)[::3]),
]


@pytest.mark.parametrize(("typ", "values"), CASES)
def test_arrow_array_equals_pyarrows_own(typ, values):
    got = arrow_array(values, typ)
    want = pa.array(values, type=typ)
    got.validate(full=True)
    assert got.type == want.type and got.null_count == want.null_count
    assert got.to_pylist() == want.to_pylist() or typ == pa.float64()  # NaN != NaN
    if typ == pa.float64():
        a, b = np.array(got.to_pylist(), dtype=float), np.array(want.to_pylist(), dtype=float)
        assert np.array_equal(a, b, equal_nan=True)


def test_a_batch_run_writing_parquet_does_not_import_pandas(tmp_path: Path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", rng.random((6, 2)))
    (tmp_path / "m.csv").write_text("id,a,b\n1,a.npy,b.npy\n")
    code = (
        "import sys, runpy; sys.argv = ['otdist', 'batch', 'm.csv', '-o', 'out.parquet', "
        "'--no-progress']\n"
        "import atexit; atexit.register(lambda: print('pandas' in sys.modules))\n"
        "runpy.run_module('otcli', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out.parquet").exists()
