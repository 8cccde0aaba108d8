"""Every ORU^R01 the test suite builds, read again by two independent checkers at the end.

tests/conftest.py wraps `reports.hl7_oru.build_oru` before any test module imports it, so
every message built in this process (the pipeline's drafts, the sign-off acts, the tests'
own) is recorded; at the end of the session each is parsed by python-hl7 (the `hl7`
package, independent of the builder) and by hl7apy in strict mode (`validate_oru`), and
must have OBR-7 and, on every measurement (NM OBX), OBX-7 and OBX-8; a signed (F) or
corrected (C) one must contain none of the machine-only content (`MACHINE_ONLY`). A
problem fails the session's last test (its teardown), naming the message's control id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

MESSAGES: list[str] = []
# Messages a test builds on purpose to see them refused (a final without its signer): they
# never reach the store, so they are counted apart and not held to the end-of-run check.
DELIBERATELY_INVALID: list[str] = []
_building_invalid = False


@contextmanager
def deliberately_invalid() -> Iterator[None]:
    """Inside this block, messages built are a test's invalid input, not the pipeline's output."""
    global _building_invalid
    _building_invalid = True
    try:
        yield
    finally:
        _building_invalid = False


def recording(build: Callable[..., str]) -> Callable[..., str]:
    def build_and_record(*args: Any, **kwargs: Any) -> str:
        message = build(*args, **kwargs)
        (DELIBERATELY_INVALID if _building_invalid else MESSAGES).append(message)
        return message

    build_and_record.__wrapped__ = build  # type: ignore[attr-defined]
    build_and_record.__doc__ = build.__doc__
    return build_and_record


def problems_of(message: str) -> list[str]:
    """What an interface analyst would object to in one message ([] for none)."""
    import hl7

    from reports.hl7_validate import machine_only_content, validate_oru

    problems = list(validate_oru(message))  # hl7apy strict, plus the table checks
    try:
        parsed = hl7.parse(message)
    except Exception as exc:  # noqa: BLE001 - whatever the independent parser objects to
        return problems + [f"python-hl7 cannot parse it: {exc}"]
    obr = parsed.segment("OBR")
    if not str(obr[7]):
        problems.append("python-hl7: OBR-7 empty")
    for obx in parsed.segments("OBX"):
        if str(obx[2]) == "NM" and not (str(obx[7]) and str(obx[8])):
            problems.append(f"python-hl7: OBX {obx[3][0][0]} without OBX-7/OBX-8")
    status = str(obr[25])
    if status in ("F", "C"):
        problems += [f"machine-only content in {status}: {marker!r}" for marker in machine_only_content(message)]
        if any(str(obx[3][0][0]) == "ECGWL-REASONING" for obx in parsed.segments("OBX")):
            problems.append(f"the interpreter's reasoning OBX in {status}")
    return problems


def summary() -> tuple[Counter[str], list[str]]:
    """(messages checked per OBR-25 status, every problem found, with the message's control id)."""
    import hl7

    statuses: Counter[str] = Counter()
    found: list[str] = []
    for message in MESSAGES:
        problems = problems_of(message)
        try:
            parsed = hl7.parse(message)
            statuses[str(parsed.segment("OBR")[25])] += 1
            control_id = str(parsed.segment("MSH")[10])
        except Exception:  # noqa: BLE001 - already reported by problems_of
            control_id = "?"
        found += [f"{control_id}: {problem}" for problem in problems]
    return statuses, found
