"""Is this ORU^R01 fit to store and send? hl7apy's structure check plus the table checks it lacks.

`validate_oru(message)` returns a list of problems (empty = valid):
- hl7apy strict parsing and validation against the v2.5.1 ORU_R01 structure (a missing
  OBR, a missing OBX-3, a segment out of place);
- what hl7apy does not check (it accepts OBX-11 = "Q"): MSH-9/10/11/12, OBR-25 in table
  0123, every OBX-11 in table 0085 and consistent with OBR-25, PID-8 in table 0001, the
  panel code on OBR-4, LOINC codes this system knows, NM values that are numbers with the
  expected UCUM unit, time stamps in TS form, a signer on final/corrected results, and
  escape sequences that are well formed;
- what an interface analyst asks of an ECG result (issue 11): OBR-7 filled; every NM
  measurement with its reference range (OBX-7), an abnormal flag from table 0078 (OBX-8) and
  its source (OBX-17: device or computed); one value per quantity (QTc: one of 8636-3 and
  76635-2); no server path in any NTE; and in a signed (F) or corrected (C) message nothing
  that only a machine draft may say (`reports.hl7_oru.MACHINE_ONLY`: the draft notice,
  the interpreter and demonstration notes, claim checks, the reasoning OBX, the
  "preliminary computer reading" sentence).

The store calls it before keeping any message: a message that fails is never stored.
"""

from __future__ import annotations

import re

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from reports.hl7_oru import (
    HL7_VERSION,
    IMPRESSION_CODE,
    MACHINE_ONLY,
    MEASUREMENT_CODES,
    PANEL_CODE,
    QTC_BAZETT_CODE,
    SEGMENT_SEPARATOR,
    SOURCE_METHODS,
    unescape,
)

TABLE_0123 = frozenset("A C F I O P R S X Y Z".split())  # OBR-25 result status
TABLE_0085 = frozenset("C D F I N O P R S U W X".split())  # OBX-11 observation result status
TABLE_0001 = frozenset("A F M N O U".split())  # administrative sex
VALUE_TYPES = frozenset({"NM", "TX", "FT", "ST", "ED", "CE", "CWE"})
TABLE_0078 = frozenset("L H LL HH N A AA < > U D B W S R I MS VS".split())  # OBX-8 abnormal flags
SOURCE_CODES = frozenset(code for code, _name, _system in SOURCE_METHODS.values())
# Codes of one quantity: a message sends at most one of each group.
SAME_QUANTITY = (frozenset({MEASUREMENT_CODES["qtc_ms"][0], QTC_BAZETT_CODE[0]}),)
# An absolute file path (/srv/..., C:\...) in a note: server internals, never sent.
_PATH = re.compile(r"(?:^|[\s(=:'\"])(?:/[\w.-]+){2,}|\b[A-Za-z]:\\")

# Which OBX-11 values fit a report whose OBR-25 is ... (a correction may leave unchanged
# observations final; a withdrawn report may mark observations wrong or deleted).
CONSISTENT_OBX_STATUS: dict[str, frozenset[str]] = {
    "P": frozenset({"P"}),
    "R": frozenset({"R"}),
    "F": frozenset({"F"}),
    "C": frozenset({"C", "F"}),
    "X": frozenset({"X", "W", "D"}),
}

KNOWN_LOINC: dict[str, str | None] = {code: unit for code, _name, unit in MEASUREMENT_CODES.values()}
KNOWN_LOINC[QTC_BAZETT_CODE[0]] = QTC_BAZETT_CODE[2]
KNOWN_LOINC[IMPRESSION_CODE[0]] = None
KNOWN_LOINC[PANEL_CODE[0]] = None

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_TS = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")
_ESCAPE_BODY = re.compile(r"^(?:[FSTRE]|X[0-9A-Fa-f]+|\.br|H|N|\.sp\d*|\.in[+-]?\d+|\.ti[+-]?\d+|\.ce|\.fi|\.nf)$")


def _escapes_ok(text: str) -> bool:
    """Every backslash opens or closes a known escape sequence (\\F\\, \\X0D\\, \\.br\\ ...)."""
    parts = text.split("\\")
    # Between pairs of backslashes lie the escape bodies: parts 1, 3, 5, ...
    if len(parts) % 2 == 0:
        return False  # an odd number of backslashes: one is unpaired
    return all(_ESCAPE_BODY.match(body) for body in parts[1::2])


def _field(fields: list[str], index: int) -> str:
    return fields[index] if len(fields) > index else ""


def _structure_problems(message: str) -> list[str]:
    try:
        parsed = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except HL7apyException as exc:
        return [f"structure (hl7apy, v{HL7_VERSION}): {exc}"]
    except Exception as exc:  # noqa: BLE001 - hl7apy raises plain errors on some garbage
        return [f"structure (hl7apy, v{HL7_VERSION}): cannot parse: {exc}"]
    return []


def _msh_problems(msh: list[str]) -> list[str]:
    # In MSH, fields[1] is MSH-2 (MSH-1 is the separator itself), so MSH-n is fields[n - 1].
    problems = []
    if _field(msh, 1) != "^~\\&":
        problems.append(f"MSH-2 encoding characters must be ^~\\& (found {_field(msh, 1)!r})")
    if _field(msh, 8) != "ORU^R01^ORU_R01":
        problems.append(f"MSH-9 must be ORU^R01^ORU_R01 (found {_field(msh, 8)!r})")
    control_id = _field(msh, 9)
    if not control_id:
        problems.append("MSH-10 message control id is missing")
    elif len(control_id) > 20:
        problems.append("MSH-10 message control id is longer than 20 characters")
    if _field(msh, 10).split("^")[0] not in ("P", "T", "D"):
        problems.append(f"MSH-11 processing id must be P, T or D (found {_field(msh, 10)!r})")
    if _field(msh, 11).split("^")[0] != HL7_VERSION:
        problems.append(f"MSH-12 version must be {HL7_VERSION} (found {_field(msh, 11)!r})")
    if not _TS.match(_field(msh, 6).split("^")[0]):
        problems.append("MSH-7 is not an HL7 time stamp")
    return problems


def _obx_problems(obx: list[str], number: int, obr_status: str) -> list[str]:
    where = f"OBX #{number}"
    problems = []
    if _field(obx, 1) != str(number):
        problems.append(f"{where}: OBX-1 set id is {_field(obx, 1)!r}, expected {number}")
    value_type = _field(obx, 2)
    if value_type not in VALUE_TYPES:
        problems.append(f"{where}: OBX-2 value type {value_type!r} is not one this system sends")
    code_parts = _field(obx, 3).split("^")
    code, system = code_parts[0], _field(code_parts, 2)
    if system == "LN" and code not in KNOWN_LOINC:
        problems.append(f"{where}: LOINC code {code!r} is not one this system reports")
    values = [v for v in _field(obx, 5).split("~") if v]
    if not values:
        problems.append(f"{where}: OBX-5 has no value")
    if value_type == "NM":
        for value in values:
            if not _NUMBER.match(value):
                problems.append(f"{where}: NM value {value!r} is not a number")
        expected_unit = KNOWN_LOINC.get(code) if system == "LN" else None
        unit_parts = _field(obx, 6).split("^")
        if expected_unit and (unit_parts[0] != expected_unit or _field(unit_parts, 2) != "UCUM"):
            problems.append(f"{where}: {code} needs the UCUM unit {expected_unit!r} (found {_field(obx, 6)!r})")
        if not _field(obx, 7):
            problems.append(f"{where}: OBX-7 reference range is missing")
        if _field(obx, 8) not in TABLE_0078:
            problems.append(f"{where}: OBX-8 abnormal flag {_field(obx, 8)!r} is not in HL7 table 0078")
        if _field(obx, 17).split("^")[0] not in SOURCE_CODES:
            problems.append(f"{where}: OBX-17 must say where the value comes from (device or computed)")
    status = _field(obx, 11)
    if status not in TABLE_0085:
        problems.append(f"{where}: OBX-11 {status!r} is not in HL7 table 0085")
    elif obr_status in CONSISTENT_OBX_STATUS and status not in CONSISTENT_OBX_STATUS[obr_status]:
        problems.append(f"{where}: OBX-11 {status!r} contradicts OBR-25 {obr_status!r}")
    observed = _field(obx, 14).split("^")[0]
    if observed and not _TS.match(observed):
        problems.append(f"{where}: OBX-14 is not an HL7 time stamp")
    return problems


def _obr_problems(obr: list[str]) -> list[str]:
    problems = []
    status = _field(obr, 25)
    if status not in TABLE_0123:
        problems.append(f"OBR-25 result status {status!r} is not in HL7 table 0123")
    if _field(obr, 4).split("^")[0::2] != [PANEL_CODE[0], PANEL_CODE[2]]:
        problems.append(f"OBR-4 must be the {PANEL_CODE[0]} {PANEL_CODE[1]} panel (LN)")
    if not _field(obr, 2) and not _field(obr, 3):
        problems.append("OBR-2/OBR-3: an order number is required")
    if not _field(obr, 7):
        problems.append("OBR-7 observation date/time is required in a result")
    for index in (7, 22):
        value = _field(obr, index).split("^")[0]
        if value and not _TS.match(value):
            problems.append(f"OBR-{index} is not an HL7 time stamp")
    if status in ("F", "C") and not _field(obr, 32):
        problems.append(f"OBR-32 principal result interpreter is required for a {status} result")
    return problems


def validate_oru(message: str, *, structure: bool = True) -> list[str]:
    """Every problem found in `message` (ER7 text); an empty list means valid.

    `structure=False` leaves out hl7apy's parse, for a message `build_oru` made a moment ago:
    its writer has a fixed ORU_R01 segment order and refuses a component over its length as
    it writes it, and the tests hold every message the suite builds to hl7apy's strict parse
    (tests/hl7_every_message.py), so the parse (most of the cost) would only repeat them.
    Every other check still runs. A message from anywhere else gets both.
    """
    if not message.startswith("MSH|"):
        return ["the message does not start with an MSH segment"]
    if "\n" in message:
        return ["segments must be separated by \\r only (found \\n)"]
    problems = _structure_problems(message) if structure else []
    segments = [s.split("|") for s in message.split(SEGMENT_SEPARATOR) if s]
    names = [s[0] for s in segments]
    problems += _msh_problems(segments[0])
    if names.count("OBR") != 1:
        problems.append(f"expected exactly one OBR (found {names.count('OBR')})")
    obr = next((s for s in segments if s[0] == "OBR"), None)
    obr_status = _field(obr, 25) if obr else ""
    if obr is not None:
        problems += _obr_problems(obr)
    pid = next((s for s in segments if s[0] == "PID"), None)
    if pid is not None:
        if not _field(pid, 3):
            problems.append("PID-3 patient identifier is missing")
        if _field(pid, 8) and _field(pid, 8) not in TABLE_0001:
            problems.append(f"PID-8 sex {_field(pid, 8)!r} is not in HL7 table 0001")
    obx_segments = [s for s in segments if s[0] == "OBX"]
    if not obx_segments and obr_status != "X":
        problems.append("no OBX: a result message needs at least the impression")
    for number, obx in enumerate(obx_segments, start=1):
        problems += _obx_problems(obx, number, obr_status)
    codes = [_field(obx, 3).split("^")[0] for obx in obx_segments]
    for group in SAME_QUANTITY:
        if sum(code in group for code in codes) > 1:
            problems.append(f"more than one value of one quantity ({' / '.join(sorted(group))})")
    for number, nte in enumerate((s for s in segments if s[0] == "NTE"), start=1):
        if _PATH.search(unescape(_field(nte, 3))):
            problems.append(f"NTE #{number}: a file path (server internals) in a note")
    if obr_status in ("F", "C"):
        problems += [f"a {obr_status} message carries machine-only content: {marker!r}"
                     for marker in machine_only_content(message)]
    for index, segment in enumerate(segments):
        text = "|".join(segment[2:] if segment[0] == "MSH" else segment[1:])
        if not _escapes_ok(text):
            problems.append(f"segment {index + 1} ({segment[0]}): a backslash that is not a valid escape sequence")
    return problems


def machine_only_content(message: str) -> list[str]:
    """The `MACHINE_ONLY` markers found in a message's notes and observations (case ignored)."""
    text = unescape(message).lower()
    return [marker for marker in MACHINE_ONLY if marker.lower() in text]
