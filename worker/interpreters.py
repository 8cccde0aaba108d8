"""Which interpreter reads the ECGs: the protocol reader, or ECG-R1 behind `model.engines`.

    load_interpreter(settings) -> Interpreter

`ECGWL_INTERPRETER=protocol` (the default) is the deterministic protocol reader from
`ingest.protocol`. `ECGWL_INTERPRETER=model` loads ECG-R1 with `model.engines.load_engine`
(`ECGWL_ENGINE=hf|vllm`, `ECGWL_MODEL_PATH`, default the bundled demonstration model).
Both are imported here, lazily: the CPU workers and the watcher never import torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from worker.settings import Settings

if TYPE_CHECKING:
    from ingest.interpretation import Interpreter

log = logging.getLogger(__name__)


def demo_model_path() -> Path:
    """The bundled demonstration checkpoint (labelled a demonstration everywhere it appears)."""
    import model

    return Path(model.__file__).resolve().parent / "demo"


def load_interpreter(settings: Settings) -> Interpreter:
    if settings.interpreter == "protocol":
        from ingest.protocol import ProtocolReader

        return ProtocolReader()
    from model.engines import load_engine

    path = settings.model_path or demo_model_path()
    log.info("loading ECG-R1 (%s engine) once for this process", settings.engine)
    options: dict[str, object] = {"max_new_tokens": settings.max_new_tokens}
    # The batch the GPU queue hands over (ECGWL_INTERPRET_BATCH_SIZE) is the batch decoded:
    # hf pads and decodes it as one, vLLM schedules at most that many sequences at once.
    options["batch_size" if settings.engine == "hf" else "max_num_seqs"] = settings.interpret_batch_size
    if settings.ecg_tower_path:
        options["ecg_tower_path"] = settings.ecg_tower_path
    return load_engine(settings.engine, path, **options)
