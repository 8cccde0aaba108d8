"""The HL7 destination configuration as an interface analyst writes it (ECGWL_HL7_DESTINATIONS)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from reports.destinations import HL7Destination, OnRefusal
from worker.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ecg-worklist.env.example"


def test_json_objects_and_old_bare_names_both_configure_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGWL_HL7_DESTINATIONS",
                       '["legacy", {"name": "his", "host": "10.0.0.5", "port": 2575, "drafts": false, "on_ae": "hold"}]')
    legacy, his = Settings().hl7_destinations
    assert (legacy.name, legacy.has_address, legacy.drafts) == ("legacy", False, True)
    assert (his.host, his.port, his.drafts, his.on_ae, his.on_ar) == ("10.0.0.5", 2575, False, "hold", "hold")
    assert Settings().hl7_destination_names == ["legacy", "his"]


def test_default_is_one_destination_named_his(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECGWL_HL7_DESTINATIONS", raising=False)
    assert Settings().hl7_destination_names == ["his"]


@pytest.mark.parametrize(("value", "problem"), [
    ('[{"name": "his", "draft": false}]', "draft"),  # a typo must not send drafts silently
    ('[{"name": "his"}, "his"]', "unique"),
    ('[{"name": "his", "port": 70000}]', "port"),
    ('[{"name": "his", "on_ar": "ignore"}]', "on_ar"),
    ('[{"name": "his system"}]', "name"),
])
def test_mistakes_are_refused_at_start(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    monkeypatch.setenv("ECGWL_HL7_DESTINATIONS", value)
    with pytest.raises(ValidationError, match=problem):
        Settings()


def test_backoff_doubles_up_to_its_cap() -> None:
    his = HL7Destination(name="his", retry_base_seconds=30, retry_max_seconds=300)
    assert [his.retry_delay(n) for n in (1, 2, 3, 4, 5, 50)] == [
        dt.timedelta(seconds=s) for s in (30, 60, 120, 240, 300, 300)]


def test_drafts_and_refusal_policies() -> None:
    finals_only = HL7Destination(name="his", drafts=False, on_ae="hold", on_ar="retry")
    assert not finals_only.takes("draft")
    assert all(finals_only.takes(s) for s in ("signed", "amended", "rejected"))
    assert HL7Destination(name="archive").takes("draft")
    assert (finals_only.on_refusal("AE"), finals_only.on_refusal("CE")) == (OnRefusal.HOLD, OnRefusal.HOLD)
    assert (finals_only.on_refusal("AR"), finals_only.on_refusal("CR")) == (OnRefusal.RETRY, OnRefusal.RETRY)


def test_the_example_environment_configures_valid_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    [line] = re.findall(r"^ECGWL_HL7_DESTINATIONS=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    monkeypatch.setenv("ECGWL_HL7_DESTINATIONS", line)
    destinations = Settings().hl7_destinations
    assert destinations and all(d.has_address for d in destinations)
    assert {d.drafts for d in destinations} == {True, False}  # the example shows both kinds
