"""The interpret batch size reaches the engine: a batch the GPU queue hands over is decoded as one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reports import store
from tests.worker.helpers import studies
from tests.worker.test_stages import _dicom_variants, _register
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.interpreters import load_interpreter
from worker.settings import Settings
from worker.stages import Outcome, interpret_studies, prepare_study


@pytest.mark.parametrize("batch_size", [3, 5])
def test_the_hf_engine_decodes_the_configured_batch_in_one_generate_call(
    make_settings: Callable[..., Settings], tmp_path: Path, batch_size: int,
) -> None:
    from model.tiny import save_tiny_model

    checkpoint = save_tiny_model(tmp_path / "tiny", demonstration=True)
    settings = make_settings(interpreter="model", engine="hf", model_path=str(checkpoint), max_new_tokens=4,
                             interpret_batch_size=batch_size)
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    engine = load_interpreter(settings)
    assert engine.batch_size == batch_size  # not the engine's own default of 8
    ctx._interpreter = engine
    rows_per_generate: list[int] = []
    real_generate = engine.model.generate

    def counting_generate(**inputs: object) -> object:
        rows_per_generate.append(int(inputs["input_ids"].shape[0]))
        return real_generate(**inputs)

    engine.model.generate = counting_generate
    _dicom_variants(tmp_path / "src", batch_size)
    ids = _register(ctx, tmp_path / "src")
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    for study_id in ids:
        prepare_study(ctx, study_id)
    assert interpret_studies(ctx, ids) == {study_id: Outcome.DONE for study_id in ids}
    assert rows_per_generate == [batch_size]
    # Each ECG went with its signal and the 12-lead drawn from it on demand (nothing stored).
    assert all(study.interpretation["modalities"] == ["ecg", "image"] for study in studies(ctx.engine))
    ctx.close()
