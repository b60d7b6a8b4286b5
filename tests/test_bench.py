"""bench/gpu_check.sh (and bench/gpu.py under it) is what a lent GPU runs for the performance table: it must keep
working between GPU sessions, so its CPU rehearsal on the tiny model runs here."""

import os
import shutil
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
    rows = {
        line.split("|")[2].strip(): line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| tiny")
    }
    # one row per SDPA backend and level, each either measured or saying why it cannot run on this CPU
    backends = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
    forced = {label: row for label, row in rows.items() if ", SDPA " in label}
    for level in ("graphs", "plain"):
        for backend in backends:
            [label] = [label for label in forced if label.startswith(f"{level}, SDPA {backend}")]
            why = forced[label][-1].strip()
            if why.startswith("failed"):
                assert f"{backend} cannot run on cpu" in why, why
            else:  # its picture is the plain pipeline's (float32 here)
                assert int(why.split("/")[0]) <= 3, forced[label]
        # the math backend runs anywhere: the forced path itself works
        assert not forced[f"{level}, SDPA MATH"][-1].strip().startswith("failed"), forced[f"{level}, SDPA MATH"]
    assert all(not row[-1].strip().startswith(("failed", "skipped")) for label, row in rows.items()
               if label not in forced), table
    assert "skipped" not in table, table
    # every other row (the rehearsal leaves out the precision group's plain bf16 row: --precision-levels graphs)
    assert set(rows) - set(forced) == {"plain (SDPA)", "plain, 10 steps", "plain, 15 steps", "graphs (own loop)",
                                       "graphs (own loop), batch 4", "graphs (own loop), bf16", "auto", "graphs"}, table
    # our own loop paints the plain pipeline's pictures (max/mean pixel difference, batch 1 and 4)
    for label in ("graphs (own loop)", "graphs (own loop), batch 4"):
        assert int(rows[label][-1].strip().split("/")[0]) <= 3, rows[label]
    # bf16 (the precision group, next to this CPU's float32) paints, and close to the float32 picture
    label = "graphs (own loop), bf16"
    assert float(rows[label][8]) > 0 and float(rows[label][-1].strip().split("/")[1]) <= 5, rows[label]
    # the service rows: every figure measured (first picture, one, 4 players, 8 players, painted again)
    assert all(cell.strip() not in ("", "-") for cell in rows["graphs"][2:9]), rows["graphs"]
    assert "device: CPU" in table and "torch 2." in table
    assert "CUDA graphs need a CUDA GPU, not cpu" in table  # the fallback says so
    assert table in result.stdout  # and the table is printed


@pytest.mark.slow
def test_a_backend_that_cannot_run_every_attention_is_measured_on_the_unet_alone_and_says_why(tmp_path):
    """On a GPU, FLASH_ATTENTION (and cuDNN) cannot run the VAE's 512-wide attention head; this CPU's kernels run
    everything, so the VAE is made to refuse, as the GPU would, whenever a backend is forced on it.  The attention
    group alone, for that backend, on both levels, one step (the rehearsal above runs every backend)."""
    import torch

    from bench import gpu
    from bench.gpu_attention import attention
    from bench.gpu_core import Bench
    from bench.gpu_core import markdown

    table_file = tmp_path / "table.md"
    args, _ = gpu.parse_args(["--device", "cpu", "--dtype", "fp32", "--models", "tiny", "--steps", "1", "--repeats",
                              "1", "--only", "attention", "--markdown", str(table_file)])

    class BenchWithAVaeThatRefusesForcedBackends(Bench):
        unet_attention_flags: list[set] = []  # per pipeline built: the SDPA flags its UNet's attention ran under

        def build(self, model, dtype=None):
            pipe = super().build(model, dtype)
            decode = pipe.vae.decode

            def vae_decode(*args, **kwargs):
                if not torch.backends.cuda.math_sdp_enabled():
                    raise RuntimeError("No available kernel. Aborting execution.")
                return decode(*args, **kwargs)

            pipe.vae.decode = vae_decode
            flags: set = set()
            self.unet_attention_flags.append(flags)
            first_attention = next(m for m in pipe.unet.modules() if type(m).__name__ == "Attention")
            first_attention.register_forward_pre_hook(lambda module, args: flags.add(
                (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.math_sdp_enabled())))
            return pipe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the rehearsal runs (OMP_NUM_THREADS=1): two threads on a busy 2-core machine fight
    bench = BenchWithAVaeThatRefusesForcedBackends(torch, args)
    try:
        for level in ("graphs", "plain"):
            attention(bench, "tiny", 64, 1, level, backends=("FLASH_ATTENTION",))
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(bench.workdir, ignore_errors=True)

    table = table_file.read_text()
    assert table == markdown(bench, bench.header)  # the table written after the last row
    rows = {
        line.split("|")[2].strip(): line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| tiny")
    }
    assert set(rows) == {"graphs, SDPA FLASH_ATTENTION, UNet only", "plain, SDPA FLASH_ATTENTION, UNet only"}, table
    for row in rows.values():  # measured, and the plain pipeline's picture
        assert float(row[8]) > 0 and int(row[-1].strip().split("/")[0]) <= 3, row
    for level in ("graphs", "plain"):
        assert (f"{level}, SDPA FLASH_ATTENTION: forcing it on every attention failed (RuntimeError: No available "
                "kernel. Aborting execution.); the UNet alone ran on it") in table
    # the plain picture to compare with (every backend allowed), then the graphs and plain levels, whose UNet's
    # attention always ran on the forced backend alone (flash, not math), warm-up included
    flags = bench.unet_attention_flags
    assert flags == [{(True, True)}, {(True, False)}, {(True, False)}], flags
