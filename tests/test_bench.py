"""bench/gpu.py is what a lent GPU runs for the performance table: it must keep working between GPU sessions."""

import subprocess
import sys

from tests.support import ROOT


def test_the_gpu_bench_runs_its_variants_and_the_service_and_writes_the_table(tmp_path):
    table = tmp_path / "table.md"
    result = subprocess.run(
        [sys.executable, "bench/gpu.py", "--device", "cpu", "--models", "tiny", "--only", "plain,deepcache,service",
         "--steps", "2", "--repeats", "1", "--skip-compile", "--markdown", str(table)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "failed" not in result.stdout, result.stdout
    rows = {line.split("|")[2].strip() for line in table.read_text().splitlines() if line.startswith("| tiny")}
    assert rows == {"plain (SDPA)", "plain, 10 steps", "plain, 15 steps", "DeepCache every 3", "DeepCache every 5",
                    "service, optimize auto", "service auto, 4 players"}
    assert "device: CPU" in table.read_text() and "torch 2." in table.read_text()
