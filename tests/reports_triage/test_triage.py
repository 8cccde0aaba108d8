"""Triage from the evidence: no critical ECG shown as routine, whoever interprets it.

The simulated critical ECGs (tests/reports_triage/critical_ecgs.py: an inferior STEMI, VT,
complete heart block, QTc > 500 ms) are read and prepared by the real pipeline functions,
interpreted by each interpreter this system runs (the protocol reader, the bundled
demonstration model, and a stand-in for the worst model, one that calls every ECG "normal
ecg"), and triaged as the worker does (`worker.stages.check_claims`: the measured values,
the protocol reader as a second reader, the interpreter). Every one must come out critical,
saying which reader found it. The bundled samples are triaged the same way (none of them
is critical; the scanned PDF has no signal and says so).

    .venv/bin/python -m pytest tests/reports_triage -s     prints the table of who found what
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.interpretation import Interpretation
from ingest.prepare import PreparedEcg, prepare
from ingest.protocol import ProtocolReader
from ingest.readers.limits import InputLimits
from ingest.readers.read import read_ecg
from ingest.report_format import format_output, parse_output
from reports.triage import MEASURED, PROTOCOL_READER, Triage, critical_now
from tests.conftest import REPO
from tests.reports_triage.critical_ecgs import write_all
from worker.stages import check_claims

EXPECTED = {  # what the measured values must find in each
    "stemi": "st elevation (inferior)", "vt": "wide complex tachycardia", "chb": "complete heart block",
    "long_qt": "marked qt prolongation",
}


class SaysNormal:
    """The worst model: every ECG is a normal ECG."""

    name = "always-normal-model"
    version = "1"

    def interpret(self, batch: list[PreparedEcg]) -> list[Interpretation]:
        text = format_output({n: "Nothing abnormal." for n in range(1, 7)}, "Normal ECG.", ["sinus rhythm", "normal ecg"])
        return [Interpretation(interpreter=self.name, interpreter_version=self.version, modalities=["ecg"],
                               raw_text=text, parsed=parse_output(text)) for _ in batch]


@pytest.fixture(scope="module")
def critical_ecgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreparedEcg]:
    folder = tmp_path_factory.mktemp("critical")
    return {name: prepare(read_ecg(path, InputLimits())) for name, path in write_all(folder).items()}


@pytest.fixture(scope="module")
def demonstration_model():
    from model.engines import load_engine
    from worker.interpreters import demo_model_path

    return load_engine("hf", demo_model_path(), max_new_tokens=768, batch_size=4)


def _interpreters(demonstration_model) -> dict[str, object]:
    return {"protocol reader": ProtocolReader(), "demonstration model": demonstration_model,
            "always-normal model": SaysNormal()}


def test_no_simulated_critical_ecg_is_routine_under_any_interpreter(critical_ecgs, demonstration_model) -> None:
    names = list(critical_ecgs)
    routine: list[str] = []
    print("\nsimulated critical ECGs: triage under each interpreter (who found it)")
    for label, interpreter in _interpreters(demonstration_model).items():
        interpretations = interpreter.interpret([critical_ecgs[name] for name in names])
        for name, interpretation in zip(names, interpretations, strict=True):
            _flags, found = check_claims(critical_ecgs[name], interpretation)
            print(f"  {label:20} {name:8} {found.summary()}")
            if not found.critical:
                routine.append(f"{name} under {label}")
            # The measured values find it whatever the interpreter said, and say where.
            measured = [f for f in found.findings if f.by == MEASURED]
            assert EXPECTED[name] in [f.finding for f in measured], (name, label, found.findings)
            if label != "protocol reader":  # a model's draft: the protocol reader read it as well
                assert found.second_reading is not None
    print(f"critical ECGs shown as routine: {len(routine)} of {len(names) * 3}")
    assert routine == []


def test_the_reader_that_found_it_is_named(critical_ecgs) -> None:
    stemi = critical_ecgs["stemi"]
    _flags, found = check_claims(stemi, SaysNormal().interpret([stemi])[0])
    assert found.summary() == ("critical: measured ST elevation II, III, aVF (measured values); "
                               "st elevation (inferior) (protocol reader)")
    assert found.second_reading is not None and "st elevation (inferior)" in found.second_reading
    # A site list without ST elevation still keeps a measured STEMI critical; a label-only finding follows the list.
    stored = found.model_dump(mode="json")
    assert critical_now(stored, ["sinus rhythm", "normal ecg"], ["complete heart block"])
    label_only = Triage(critical=True, findings=[f for f in found.findings if f.by == PROTOCOL_READER],
                        second_reading=found.second_reading).model_dump(mode="json")
    assert not critical_now(label_only, ["sinus rhythm"], ["complete heart block"])
    assert critical_now(label_only, ["sinus rhythm"], None)


def test_the_bundled_samples_are_triaged_and_a_scan_says_it_has_no_signal(tmp_path: Path) -> None:
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    summaries = {}
    for path in sorted((tmp_path / "samples").iterdir()):
        if path.suffix not in (".dcm", ".hea", ".pdf"):
            continue
        prepared = prepare(read_ecg(path, InputLimits()))
        _flags, found = check_claims(prepared, SaysNormal().interpret([prepared])[0])
        summaries[path.name] = (found.critical, found.has_signal, found.summary())
    print("\nsamples:", summaries)
    # None of the samples shows a critical finding (the WFDB sample's highest ST is +0.05 mV).
    assert {name: critical for name, (critical, _, _) in summaries.items()} == {
        "demo-dicom.dcm": False, "demo-report.pdf": False, "demo-scan.pdf": False, "demo-wfdb.hea": False}
    assert summaries["demo-scan.pdf"][1:] == (False, "routine (no signal: not measured)")
