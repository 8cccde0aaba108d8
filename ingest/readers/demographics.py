"""Demographics from text: `Label: value` fields of a PDF's text layer, WFDB header comments,
and the optional JSON sidecar file that any source may carry; and the sanity check at the edge
(`sanitize_demographics`) that every reader's result passes through in `ingest.readers.read`.

Sanity at the edge: a value that cannot be true (an age of 330, a birth after the
acquisition, an acquisition in the future, a sex code that is none of M/F/O/U, an identifier
with control characters) is dropped with a note in `Ecg.provenance["demographics_notes"]`,
so it is never shown on the review page nor sent in PID. The notes never repeat the value.

Dates are parsed only when they are unambiguous: `03/04/1970` could be March or April,
so it is left empty (with a note) rather than guessed. A person can fill it in; a wrong
birth date on a report cannot be taken back.

The sidecar is `<file>.json` (for example `scan.pdf.json`, or `scan.json`): a JSON
object with any of the `Demographics` fields. It fills fields the source itself lacks;
when it names a different patient id than the source, the file is rejected, because
one of the two is wrong and a report must never go to the wrong patient.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from pydantic import ValidationError

from ingest.readers.detect import sidecar_path
from ingest.ecg import Demographics, Sex
from ingest.errors import IngestError

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}


# Spellings that mean "not known" and are therefore no reason for a note.
_UNKNOWN_SEX = {"", "u", "un", "unk", "unknown", "unspecified", "not specified", "0", "none"}


def parse_sex(text: str | None) -> Sex:
    """M/F/O from the usual spellings (`Male`, `f`, `Female`, `W` for weiblich...)."""
    if not text:
        return Sex.UNKNOWN
    word = text.strip().lower()
    if word in {"m", "male", "man", "masculino", "maschio", "männlich"}:
        return Sex.MALE
    if word in {"f", "female", "woman", "w", "femenino", "femmina", "weiblich"}:
        return Sex.FEMALE
    if word in {"o", "other"}:
        return Sex.OTHER
    return Sex.UNKNOWN


def parse_sex_noted(text: str | None, notes: list[str]) -> Sex:
    """`parse_sex`, adding a note to `notes` when a code was given that is none of M/F/O/U."""
    sex = parse_sex(text)
    if sex is Sex.UNKNOWN and text is not None and text.strip().lower() not in _UNKNOWN_SEX:
        notes.append("sex code not recognised (not M/F/O/U); dropped")
    return sex


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_date(text: str) -> dt.date | None:
    """A date from ISO, compact, dotted (D.M.Y), month-name or unambiguous slashed forms."""
    text = text.strip()
    if m := re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})\b", text):
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text):
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.match(r"(\d{1,2})\.(\d{1,2})\.(\d{4})\b", text):  # European D.M.Y
        return _safe_date(int(m[3]), int(m[2]), int(m[1]))
    if m := re.match(r"(\d{1,2})[-\s]([A-Za-z]{3})[a-z]*[-\s,]+(\d{4})\b", text):  # 02-Jan-1970
        month = _MONTHS.get(m[2].lower())
        return _safe_date(int(m[3]), month, int(m[1])) if month else None
    if m := re.match(r"([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2}),?\s+(\d{4})\b", text):  # Jan 2, 1970
        month = _MONTHS.get(m[1].lower())
        return _safe_date(int(m[3]), month, int(m[2])) if month else None
    if m := re.match(r"(\d{1,2})/(\d{1,2})/(\d{4})\b", text):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        if first > 12 >= second:
            return _safe_date(year, second, first)  # day first
        if second > 12 >= first:
            return _safe_date(year, first, second)  # month first
        if first == second:
            return _safe_date(year, first, second)
        return None  # ambiguous: both could be the month
    return None


def parse_datetime(text: str) -> dt.datetime | None:
    """A date (as `parse_date`) optionally followed by a time `HH:MM[:SS]`."""
    date = parse_date(text)
    if date is None:
        return None
    time = re.search(r"(?:T|\s)(\d{1,2}):(\d{2})(?::(\d{2}))?", text)
    if time is None:
        return dt.datetime(date.year, date.month, date.day)
    hour, minute, second = int(time[1]), int(time[2]), int(time[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        return dt.datetime(date.year, date.month, date.day)
    return dt.datetime(date.year, date.month, date.day, hour, minute, second)


_IGNORED = "_ignored"
# Field labels as ECG management systems print them; longer labels first so that
# "Patient ID" wins over "ID" and "Birth date" over "Date".
_LABELS: dict[str, tuple[str, ...]] = {
    "patient_name": ("patient name", "name"),
    "family_name": ("last name", "family name", "surname"),
    "given_name": ("first name", "given name"),
    "patient_id": ("patient id", "mrn", "pid", "id"),
    "birth_date": ("date of birth", "birth date", "birthdate", "dob"),
    "sex": ("sex", "gender"),
    "age": ("age",),
    "accession": ("accession number", "accession no", "accession #", "accession"),
    "acquired": ("acquisition date", "acquired", "acquisition", "recorded", "date"),
    # Labels that look like the ones above but name someone or something else: matched so
    # that "Device ID: 7" is not read as a patient id, and so that they end the value before.
    _IGNORED: ("physician name", "referring physician", "ordering physician", "physician",
               "technician", "operator", "confirmed by", "confirmed", "device id", "device",
               "study id", "order id", "visit id", "encounter id", "location", "room", "ward",
               "print date", "printed", "report date"),
}
_LABEL_TO_FIELD = {label: name for name, labels in _LABELS.items() for label in labels}
_LABEL_PATTERN = re.compile(
    r"(?<![A-Za-z])(" + "|".join(re.escape(label) for label in sorted(_LABEL_TO_FIELD, key=len, reverse=True))
    + r")\s*[:#]\s*",
    re.IGNORECASE,
)


def labelled_fields(text: str) -> dict[str, str]:
    """`{field: value}` for every known `Label: value` in the text (first occurrence wins).

    A value runs to the end of its line or to the next known label, since text layers
    often put several fields on one line ("Name: DOE^JANE ID: 123 DOB: 1970-01-02").
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        matches = list(_LABEL_PATTERN.finditer(line))
        ends = [following.start() for following in matches[1:]] + [len(line)]
        for this, end in zip(matches, ends[: len(matches)], strict=True):
            value = line[this.end():end].strip(" \t,;|")
            name = _LABEL_TO_FIELD[this[1].lower()]
            if value and name != _IGNORED and name not in fields:
                fields[name] = value
    return fields


def demographics_from_text(text: str) -> tuple[Demographics, list[str]]:
    """Demographics found in free text (a PDF's text layer), and notes on what was unclear."""
    fields = labelled_fields(text)
    notes: list[str] = []
    name = fields.get("patient_name")
    if name is None and "family_name" in fields:  # stored HL7/DICOM style: FAMILY^GIVEN
        name = "^".join(part for part in (fields["family_name"], fields.get("given_name")) if part)
    demographics = Demographics(
        patient_id=fields.get("patient_id"),
        patient_name=name,
        sex=parse_sex_noted(fields.get("sex"), notes),
        accession=fields.get("accession"),
    )
    if "birth_date" in fields:
        demographics.birth_date = parse_date(fields["birth_date"])
        if demographics.birth_date is None:
            notes.append("birth date in the text is ambiguous or unreadable; left empty")
    if "acquired" in fields:
        demographics.acquired_at = parse_datetime(fields["acquired"])
        if demographics.acquired_at is None:
            notes.append("acquisition date in the text is ambiguous or unreadable; left empty")
    if "age" in fields and (m := re.match(r"(\d{1,3})\b", fields["age"])):
        demographics.age_years = int(m[1])
    return demographics, notes


def demographics_from_comments(comments: list[str]) -> tuple[Demographics, list[str]]:
    """Age and sex from WFDB header comments (`Age: 63`, `Sex: Male`, `<age>: 63 <sex>: M`), and notes."""
    text = " ".join(comments)
    demographics = Demographics()
    notes: list[str] = []
    if m := re.search(r"<?\bage>?\s*[:=]\s*(\d{1,3})\b", text, re.IGNORECASE):
        demographics.age_years = int(m[1])
    if m := re.search(r"<?\b(?:sex|gender)>?\s*[:=]\s*([A-Za-z]+)", text, re.IGNORECASE):
        demographics.sex = parse_sex_noted(m[1], notes)
    return demographics, notes


def read_sidecar(path: Path) -> Demographics | None:
    """The sidecar's demographics, None without a sidecar; `IngestError` if it is unreadable."""
    sidecar = sidecar_path(path)
    if sidecar is None:
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(path, f"sidecar {sidecar.name} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise IngestError(path, f"sidecar {sidecar.name} is not a JSON object")
    known = {key: value for key, value in data.items() if key in Demographics.model_fields}
    if "sex" in known:
        known["sex"] = parse_sex(str(known["sex"]))
    try:
        return Demographics.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise IngestError(path, f"sidecar {sidecar.name} has invalid fields ({problems})") from exc


# Characters that end or split an HL7 field: never part of an identifier a report is matched by.
_HL7_DELIMITERS = "|^~\\&"
_IDENTIFIERS = ("patient_id", "accession", "study_uid")


def check_identifiers(demographics: Demographics, path: str | Path) -> None:
    """Refuse a file whose patient id, accession or study UID could break or forge an HL7 message.

    A control character (a line break, a NUL...) or an HL7 delimiter (| ^ ~ \\ &) in an
    identifier is rejected with a reason naming the field, never the value. Dropping it (as
    `sanitize_demographics` does with unreadable names) would send a report that the
    hospital's systems can no longer file under its patient or order; changing it would file
    it under another. Names keep their `^` (FAMILY^GIVEN); the HL7 builder escapes the rest.
    """
    for name in _IDENTIFIERS:
        value = getattr(demographics, name)
        if not value:
            continue
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
            kind = "a line break" if ("\r" in value or "\n" in value) else "a control character"
            raise IngestError(path, f"the {name.replace('_', ' ')} contains {kind}: not a usable identifier")
        if found := sorted({c for c in value if c in _HL7_DELIMITERS}):
            raise IngestError(path, f"the {name.replace('_', ' ')} contains the HL7 delimiter(s) "
                                    f"{' '.join(found)}: not a usable identifier")


def merge_demographics(primary: Demographics, fallback: Demographics, path: str | Path) -> Demographics:
    """`primary`, with its empty fields filled from `fallback`.

    Raises `IngestError` when both name a patient id and they differ.
    """
    if primary.patient_id and fallback.patient_id and primary.patient_id.strip() != fallback.patient_id.strip():
        raise IngestError(path, "the sidecar names a different patient id than the file itself")
    merged = primary.model_copy()
    for name in Demographics.model_fields:
        value = getattr(merged, name)
        if value is None or value == Sex.UNKNOWN:
            setattr(merged, name, getattr(fallback, name))
    return merged


# --- sanity at the edge ----------------------------------------------------------------------

MAX_AGE_YEARS = 125  # the oldest documented person was 122
EARLIEST_ACQUISITION = dt.datetime(1950, 1, 1)  # no stored electronic ECG is older
MAX_IDENTIFIER_CHARS = 64
MAX_NAME_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _age_at(birth: dt.date, when: dt.date) -> int:
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def _plausible_text(value: str | None, max_chars: int, needs_letter: bool) -> bool:
    """False for text that no registration system produces: control bytes, nothing readable, too long."""
    if value is None:
        return True
    text = value.strip()
    if not text or len(text) > max_chars or _CONTROL.search(text):
        return False
    return any(ch.isalpha() for ch in text) if needs_letter else any(ch.isalnum() for ch in text)


def sanitize_demographics(demographics: Demographics,
                          now: dt.datetime | None = None) -> tuple[Demographics, list[str]]:
    """The demographics with every impossible value removed, and one note per removal.

    Applied to every reader's result (`ingest.readers.read.read_ecg`), so nothing impossible is
    shown on the review page or sent in PID. Dropping is the rule because a wrong birth date or
    identifier on a report cannot be taken back, and a person can still fill a gap.
    """
    now = now or dt.datetime.now()
    clean = demographics.model_copy()
    notes: list[str] = []

    acquired = clean.acquired_at
    if acquired is not None and (acquired > now + dt.timedelta(days=1) or acquired < EARLIEST_ACQUISITION):
        notes.append("acquisition time is in the future or before 1950; dropped")
        clean.acquired_at = acquired = None
    reference = (acquired or now).date()

    birth = clean.birth_date
    if birth is not None:
        if birth > reference:
            notes.append("birth date is after the acquisition" if acquired else "birth date is in the future")
            notes[-1] += "; dropped"
            clean.birth_date = birth = None
        elif _age_at(birth, reference) > MAX_AGE_YEARS:
            notes.append(f"birth date implies an age over {MAX_AGE_YEARS} years; dropped")
            clean.birth_date = birth = None

    age = clean.age_years
    if age is not None and not 0 <= age <= MAX_AGE_YEARS:
        notes.append(f"age outside 0-{MAX_AGE_YEARS} years; dropped")
        clean.age_years = age = None
    if age is not None and birth is not None and acquired is not None:
        if abs(_age_at(birth, acquired.date()) - age) > 1:
            notes.append("stated age disagrees with the birth date by more than a year; both dropped")
            clean.age_years = clean.birth_date = None

    for field, max_chars, needs_letter in (("patient_id", MAX_IDENTIFIER_CHARS, False),
                                           ("accession", MAX_IDENTIFIER_CHARS, False),
                                           ("study_uid", MAX_IDENTIFIER_CHARS, False),
                                           ("patient_name", MAX_NAME_CHARS, True)):
        value = getattr(clean, field)
        if value is not None and not _plausible_text(value, max_chars, needs_letter):
            notes.append(f"{field.replace('_', ' ')} is not readable text; dropped")
            setattr(clean, field, None)
        elif value is not None and value != value.strip():
            setattr(clean, field, value.strip())
    return clean, notes
