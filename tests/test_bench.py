"""bench/gpu_check.sh (and bench/gpu.py under it) is what a lent GPU runs for the performance table: it must keep
working between GPU sessions, so its CPU rehearsal on the tiny model runs here."""

import os
import subprocess
import sys

import pytest

from tests.support import ROOT


@pytest.mark.slow
def test_the_gpu_check_runs_every_variant_and_the_service_and_writes_the_table(tmp_path):
    result = subprocess.run(
        ["bash", "bench/gpu_check.sh", str(tmp_path / "out"), "--cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable, "LIMIT": "850", "BUDGET": "800", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "failed" not in table and "skipped" not in table, table
    rows = {
        line.split("|")[2].strip(): line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| tiny")
    }
    assert {"plain (SDPA)", "plain, 10 steps", "plain, 15 steps", "DeepCache every 3", "DeepCache every 5",
            "graphs (own loop)", "graphs (own loop), batch 4", "auto", "graphs"} == set(rows)
    # our own loop paints the plain pipeline's pictures (max/mean pixel difference, batch 1 and 4)
    for label in ("graphs (own loop)", "graphs (own loop), batch 4"):
        assert int(rows[label][-1].strip().split("/")[0]) <= 3, rows[label]
    # the service rows: every figure measured (first picture, one, 4 players, 8 players, painted again)
    assert all(cell.strip() not in ("", "-") for cell in rows["graphs"][2:9]), rows["graphs"]
    assert "device: CPU" in table and "torch 2." in table
    assert "CUDA graphs need a CUDA GPU, not cpu" in table  # the fallback says so
    assert table in result.stdout  # and the table is printed
