"""benchmarks/gpu_check.py's vLLM phase on CPU with the tiny model: random weights (load_format
"dummy"), reports of exactly --report-tokens tokens, every input kind, and the overlap pipeline."""

from __future__ import annotations

import pytest

from benchmarks import gpu_check


def test_the_vllm_phase_runs_the_whole_grid(capsys: pytest.CaptureFixture[str]) -> None:
    rows = gpu_check.main(["--tiny", "--engines", "vllm", "--batch-sizes", "1", "2", "--report-tokens", "6",
                           "--overlap-batches", "2", "--workers", "1"])
    grid = [r for r in rows if r.engine == "vllm"]
    assert [(r.modality, r.batch) for r in grid] == [(m, b) for m in gpu_check.MODALITIES for b in (1, 2)]
    # random weights never stop: batch x report tokens generated in each run
    assert all(abs(r.tokens_per_s * r.seconds - r.batch * 6) < 1e-6 * r.batch * 6 + 1e-3 for r in grid)
    [pipeline] = [r for r in rows if r.engine == "vllm+cpu"]
    assert pipeline.batch == 2 and pipeline.reports_per_s > 0
    out = capsys.readouterr().out
    assert "vLLM signal+image at batch 2:" in out
