"""The text layer of a cart's PDF: the device's measurements, its statements and who the patient is.

    read_text_layer(pages) -> TextFindings

The words of each page (text objects with their boxes, `document.Word`) are set into lines
by their position, so a label and its value are read together however the exporter
ordered its drawing, and each field is read by the layout that cart prints:

- measurements: a known label, its value and unit on the same line ("Vent. rate 80 BPM",
  "PQ Intervall 190ms", "QT/QTcB 362/417 ms", "P-R-T axes -5 34 11", "HF 63 /min",
  "P-QRS-T Winkel 66/86/23°"), and the axis block some carts print ("--AXIS--" then
  "P 74", "QRS 52", "T 57"). A value is kept only inside its physiological range, with
  the unit it must have when a unit is printed, and only if every page that prints the
  field prints the same value.
- statements: the column of text beside the measurement block (GE MUSE/12SL, Schiller,
  Philips print the interpretation there); report-status lines ("Unconfirmed",
  "Unbestätigter Bericht") say whether they are the device's own (confirmed = False).
- demographics: labelled fields (`Label: value` in one text object, or a label word and
  its value word side by side on a line), and two unlabelled layouts recognised by their
  anchors: GE MUSE's first line (name, then "ID:<id>", then the acquisition time) and
  date-of-birth line ("1997/09/08 (23 yr)"); GE CardioSoft's name above "Patienten-Nr.:".
  A value that is not a clean identifier, name or date is not taken: garbage never
  reaches PID (the sanity check in `ingest.readers.demographics` runs after this too).

A text layer whose characters cannot be mapped to letters (fonts without a character
map give private-use or control codes) is reported as unreadable and nothing is taken
from it. Real cart PDFs these rules were written on: GE MUSE (two), GE CardioSoft (two)
and Schiller (one). The CardioSoft and Schiller files are in tests/data/pdf/ (see its
MANIFEST); the two MUSE files came from a public repository without a licence, so they may
not be redistributed, and the tests use a page they write in MUSE's layout instead
(tests/ingest_readers/muse_page.py). No real Philips or Mortara PDF was found; their
layouts follow the field labels those carts print, tested on PDFs written by the tests.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ingest.ecg import Demographics, DeviceStatement, Measurements, Sex
from ingest.readers.demographics import labelled_fields, parse_sex_noted
from ingest.readers.demographics import parse_date as _parse_date
from ingest.readers.demographics import parse_datetime as _parse_datetime
from ingest.readers.pdf.document import PageContent, Word

LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_LEAD_LOOKUP = {name.lower(): name for name in LEAD_NAMES}


@dataclass(frozen=True)
class Line:
    """Words whose vertical centres agree, left to right."""

    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    @property
    def top(self) -> float:
        return min(word.box[1] for word in self.words)

    @property
    def bottom(self) -> float:
        return max(word.box[3] for word in self.words)


@dataclass
class TextFindings:
    """What the text layer says, each field only where it was read with confidence."""

    measurements: Measurements | None = None
    statements: list[DeviceStatement] = field(default_factory=list)
    demographics: Demographics = field(default_factory=Demographics)
    device: str | None = None
    readable: bool = True
    notes: list[str] = field(default_factory=list)  # on measurements and statements
    demographics_notes: list[str] = field(default_factory=list)


def lead_label(text: str) -> str | None:
    """The standard lead a label word names ("aVR", "AVR", "V1", "II"), or None.

    I, II and III only in capitals: a lower-case "i" is a word, not a lead.
    """
    word = text.strip().rstrip(":").replace(" ", "")
    if word in ("I", "II", "III"):
        return word
    return _LEAD_LOOKUP.get(word.lower()) if word.lower() not in ("i", "ii", "iii") else None


def lines_of(words: Iterable[Word]) -> list[Line]:
    """Words grouped into lines: a word joins a line when its centre lies within half a
    typical word height of the line's first word's centre."""
    ordered = sorted(words, key=lambda word: word.centre[1])
    if not ordered:
        return []
    tolerance = 0.5 * statistics.median(max(word.height, 0.5) for word in ordered)
    lines: list[list[Word]] = []
    anchor = None
    for word in ordered:
        if anchor is None or word.centre[1] - anchor > tolerance:
            lines.append([word])
            anchor = word.centre[1]
        else:
            lines[-1].append(word)
    return [Line(tuple(sorted(line, key=lambda word: word.box[0]))) for line in lines]


# --- readability ------------------------------------------------------------------------------

def _unmapped(text: str) -> bool:
    """Characters a font without a character map yields: controls, private use, U+FFFD."""
    return any(ord(ch) < 32 or 0xE000 <= ord(ch) <= 0xF8FF or ch == "\ufffd" for ch in text)


def readable_words(pages: Sequence[PageContent]) -> tuple[list[list[Word]], bool]:
    """Each page's usable words, and whether the text layer as a whole is readable.

    Words with unmapped characters are dropped; a layer where most words are such (or
    none has a letter or digit) is unreadable as a whole.
    """
    kept, total, bad = [], 0, 0
    for page in pages:
        good = []
        for word in page.words:
            total += 1
            if _unmapped(word.text) or not any(ch.isalnum() for ch in word.text):
                bad += 1
                continue
            good.append(word)
        kept.append(good)
    return kept, not total or bad <= 0.5 * total


# --- measurements -----------------------------------------------------------------------------

_MS = r"\s*(?P<unit>ms|msec)?"
_SEP = r"\s*[:=]?\s*"
_INTERVAL = r"(?:[\s-]*(?:interval|intervall|int\.?|dauer|duration|dur\.?|zeit))?"
_MEASUREMENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
        ("hr", r"(?<![\w/])(?:vent\.?\s*rate|ventricular\s+rate|heart\s*rate|herzfrequenz|frequenz|fr[ée]quence"
               r"|hf|hr|rate)" + _SEP + r"(?P<value>\d{2,3})(?![\d.,])(?!\s*-\s*\d)"  # "V-rate 50-99" is a range
               r"\s*(?P<unit>bpm|/\s*min|1/min|b/min)?"),
        ("rr", r"(?<![\w/])RR(?:\s*/\s*PP)?" + _INTERVAL + _SEP + r"(?P<value>\d{3,4})(?![\d.,])(?:\s*/\s*\d{3,4})?" + _MS),
        ("pr", r"(?<![\w/-])(?:PR|PQ|P-R|P-Q)(?![\w-])" + _INTERVAL + _SEP + r"(?P<value>\d{2,3})(?![\d.,])" + _MS),
        ("qrs", r"(?<![\w/-])QRS(?:d|-?dauer|\s+duration|\s+dur\.?|\s+dauer)?(?![\w-])" + _SEP
                + r"(?P<value>\d{2,3})(?![\d.,])" + _MS),
        ("qt_qtc", r"(?<![\w/])QT\s*/\s*QTc(?:B|b|Baz)?" + _SEP + r"(?P<value>\d{3})\s*/\s*(?P<second>\d{3})(?![\d.,])"
                   + _MS),
        ("qt", r"(?<![\w/])QT(?![\wc/-])" + _INTERVAL + _SEP + r"(?P<value>\d{3})(?![\d.,/])" + _MS),
        ("qtc", r"(?<![\w/])QTc(?:B|b|Baz)?(?![\w/])" + _SEP + r"(?P<value>\d{3})(?![\d.,/])" + _MS),
        ("qtc_fridericia", r"(?<![\w/])QTc\s*F(?:rid)?(?![\w/])" + _SEP + r"(?P<value>\d{3})(?![\d.,/])" + _MS),
        ("axes", r"(?<![\w/-])(?:P-R-T|P-QRS-T)\s*(?:axes|axis|achsen|winkel|angles?)?" + _SEP
                 + r"(?P<value>-?\d{1,3})°?\s*[/\s]\s*(?P<second>-?\d{1,3})°?\s*[/\s]\s*(?P<third>-?\d{1,3})(?![\d.,])"),
        ("p_axis", r"(?<![\w/-])P[\s-]*(?:axis|achse|axe)" + _SEP + r"(?P<value>-?\d{1,3})(?![\d.,])"),
        ("qrs_axis", r"(?<![\w/-])(?:QRS|R)[\s-]*(?:axis|achse|axe)" + _SEP + r"(?P<value>-?\d{1,3})(?![\d.,])"),
        ("t_axis", r"(?<![\w/-])T[\s-]*(?:axis|achse|axe)" + _SEP + r"(?P<value>-?\d{1,3})(?![\d.,])"),
    )
)
# Ranges a printed value must fall in to be taken (ms, bpm, degrees).
_RANGES = {"hr_bpm": (20, 300), "rr_ms": (200, 3000), "pr_ms": (60, 400), "qrs_ms": (40, 250),
           "qt_ms": (200, 700), "qtc_ms": (250, 750), "qtc_fridericia_ms": (250, 750),
           "p_axis_deg": (-180, 360), "qrs_axis_deg": (-180, 360), "t_axis_deg": (-180, 360)}
_AXIS_HEADER = re.compile(r"^-+\s*(?:axis|axes|achsen|axe)\s*-+|^(?:axis|axes|achsen)$", re.IGNORECASE)
_AXIS_ROW = re.compile(r"^(P|QRS|T)\s*[:=]?\s*(-?\d{1,3})(?![\d.,])", re.IGNORECASE)


def _line_measurements(line: str) -> list[tuple[str, float, tuple[int, int]]]:
    """(field, value, span in the line) for every measurement a line of text states."""
    found: list[tuple[str, float, tuple[int, int]]] = []
    taken: list[tuple[int, int]] = []
    for name, pattern in _MEASUREMENT_PATTERNS:
        for match in pattern.finditer(line):
            if any(start < match.end() and match.start() < end for start, end in taken):
                continue  # "QT/QTc 408/390" is one field, not also a QT and a QTc
            span = match.span()
            taken.append(span)
            value = float(match["value"])
            if name == "qt_qtc":
                found += [("qt_ms", value, span), ("qtc_ms", float(match["second"]), span)]
            elif name == "axes":
                found += [("p_axis_deg", value, span), ("qrs_axis_deg", float(match["second"]), span),
                          ("t_axis_deg", float(match["third"]), span)]
            else:
                found.append((_FIELD_OF[name], value, span))
    return found


def _measurement_right_edge(line: Line) -> float | None:
    """Right edge (display mm) of the words of a line that hold measurements, if any."""
    text = line.text.strip()
    spans = [span for _, _, span in _line_measurements(text)]
    if (row := _AXIS_ROW.match(text)) is not None:
        spans.append(row.span())
    if not spans:
        return None
    right, offset = None, 0
    for word in line.words:
        start, end = offset, offset + len(word.text)
        offset = end + 1
        if any(s < end and start < e for s, e in spans):
            right = word.box[2] if right is None else max(right, word.box[2])
    return right


_FIELD_OF = {"hr": "hr_bpm", "rr": "rr_ms", "pr": "pr_ms", "qrs": "qrs_ms", "qt": "qt_ms", "qtc": "qtc_ms",
             "qtc_fridericia": "qtc_fridericia_ms", "p_axis": "p_axis_deg", "qrs_axis": "qrs_axis_deg",
             "t_axis": "t_axis_deg"}
_AXIS_FIELD = {"p": "p_axis_deg", "qrs": "qrs_axis_deg", "t": "t_axis_deg"}


def read_measurements(lines: Sequence[Line]) -> tuple[Measurements | None, list[str], list[Line]]:
    """The device measurements the lines print, notes on what was refused, and the lines that held them."""
    values: dict[str, set[float]] = {}
    holding: list[Line] = []
    axis_rows_left = 0
    for line in lines:
        text = line.text.strip()
        pairs: list[tuple[str, float]] = []
        if _AXIS_HEADER.match(text):
            axis_rows_left = 3
            holding.append(line)
            continue
        if axis_rows_left and (row := _AXIS_ROW.match(text)):
            axis_rows_left -= 1
            pairs.append((_AXIS_FIELD[row[1].lower()], float(row[2])))
        else:
            axis_rows_left = 0
            pairs = [(name, value) for name, value, _ in _line_measurements(text)]
        if pairs:
            holding.append(line)
        for name, value in pairs:
            values.setdefault(name, set()).add(value)
    notes: list[str] = []
    chosen: dict[str, float] = {}
    for name, found in values.items():
        low, high = _RANGES[name]
        label = name.rsplit("_", 1)[0].replace("_", " ")
        if len(found) > 1:
            notes.append(f"device {label} printed with different values; not taken")
        elif not low <= (value := next(iter(found))) <= high:
            notes.append(f"device {label} printed outside {low}-{high}; not taken")
        else:
            chosen[name] = value
    if "hr_bpm" not in chosen and "rr_ms" in chosen:
        chosen["hr_bpm"] = round(60000.0 / chosen["rr_ms"], 1)
    if not chosen:
        return None, notes, holding
    return Measurements(**chosen), notes, holding


# --- statements -------------------------------------------------------------------------------

_STATUS_UNCONFIRMED = re.compile(r"unconfirmed|unbest[äa]t|nicht\s+best[äa]tigt|non\s+confirm|sin\s+confirmar"
                                 r"|not\s+confirmed|nicht\s+befundet|unverified", re.IGNORECASE)
_STATUS_CONFIRMED = re.compile(r"^(?:confirmed|reviewed|best[äa]tigt|overread)\s*(?:by|von|durch)?\b", re.IGNORECASE)
_NOT_A_STATEMENT = re.compile(r"^(?:referred\s+by|requested\s+by|technician|tech|operator|test\s+ind|room|loc"
                              r"|order|page|seite|fortsetzung|continued|continuation|\d[\d.:/ ]*$)", re.IGNORECASE)


def read_statements(lines: Sequence[Line], measurement_lines: Sequence[Line],
                    trace_top: float | None) -> list[DeviceStatement]:
    """The interpretation column beside the measurement block, top to bottom.

    It starts right of the measurement values, at the first measurement line, and runs down
    while lines start at the same x (within 4 mm), above the traces and with no gap over 8 mm.
    Status lines set `confirmed` and are not statements themselves.
    """
    edges = [edge for line in measurement_lines if (edge := _measurement_right_edge(line)) is not None]
    if not edges:
        return []
    block_right = max(edges)
    first = min(line.top for line in measurement_lines)
    candidates = [word for line in lines for word in line.words
                  if word.box[0] > block_right + 1.0 and word.box[1] >= first - 2.0
                  and (trace_top is None or word.box[3] <= trace_top)]
    starting = [word.box[0] for word in candidates if word.box[1] < first + 6.0]
    if not starting:
        return []
    column_x = min(starting)
    column = [word for word in candidates if abs(word.box[0] - column_x) <= 4.0]
    texts: list[str] = []
    confirmed: bool | None = None
    previous_bottom = None
    for line in lines_of(column):
        if previous_bottom is not None and line.top - previous_bottom > 8.0:
            break
        previous_bottom = line.bottom
        text = re.sub(r"^\*+\s*|\s*\*+$", "", line.text).strip()
        if _STATUS_UNCONFIRMED.search(text):
            confirmed = False
            continue
        if _STATUS_CONFIRMED.match(text):
            confirmed = True if confirmed is None else confirmed
            continue
        if len(text) < 3 or _NOT_A_STATEMENT.match(text) or not any(ch.isalpha() for ch in text):
            continue
        texts.append(text)
    return [DeviceStatement(text=text, confirmed=confirmed) for text in texts]


# --- demographics -----------------------------------------------------------------------------

_YEAR_FIRST_SLASHED = re.compile(r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})\b")


def parse_date(text: str) -> dt.date | None:
    """`ingest.readers.demographics.parse_date`, and GE MUSE's year-first "1997/09/08"."""
    return _parse_date(_YEAR_FIRST_SLASHED.sub(r"\1-\2-\3", text))


def parse_datetime(text: str) -> dt.datetime | None:
    """`ingest.readers.demographics.parse_datetime`, and GE MUSE's "2020/02/11 11:31:29"."""
    return _parse_datetime(_YEAR_FIRST_SLASHED.sub(r"\1-\2-\3", text))


# A word that is a whole date and time to the second: how carts print the acquisition time
# (a printing time comes with words, "Gedruckt am ...", "Printed ...", so it is never a word alone).
_DATETIME_WORD = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{2,4}\s+\d{1,2}:\d{2}:\d{2}$")

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$")
_MUSE_ID = re.compile(r"^(?:ID|PID)\s*:\s*(\S+)$", re.IGNORECASE)
_BIRTH_WITH_AGE = re.compile(r"^(?P<date>.+?)\s*\(\s*(?P<age><?\s*\d{1,3})\s*(?:yr|yrs|years?|y|j|jahre|歲|岁|ans|años)?\.?\s*\)$",
                             re.IGNORECASE)
_AGE_WORD = re.compile(r"^(?P<age>\d{1,3})\s*(?:J\.?|Y|yr|yrs|years|Jahre)$", re.IGNORECASE)
_SEX_WORDS = {"male": Sex.MALE, "female": Sex.FEMALE, "männlich": Sex.MALE, "weiblich": Sex.FEMALE,
              "男": Sex.MALE, "女": Sex.FEMALE, "masculin": Sex.MALE, "féminin": Sex.FEMALE,
              "masculino": Sex.MALE, "femenino": Sex.FEMALE}
# A label word standing alone, its value the next word on the line (Schiller prints "Pat.-ID  1282423").
_LABEL_WORDS = {"name": "patient_name", "patient name": "patient_name", "patient": "patient_name",
                "pat.-id": "patient_id", "pat-id": "patient_id", "pat. id": "patient_id", "patient id": "patient_id",
                "patienten-nr.": "patient_id", "patienten-nr": "patient_id", "mrn": "patient_id", "id": "patient_id",
                "geb.-datum": "birth_date", "geburtsdatum": "birth_date", "dob": "birth_date",
                "date of birth": "birth_date", "birth date": "birth_date",
                "alter": "age", "age": "age", "geschlecht": "sex", "sex": "sex", "gender": "sex",
                "accession": "accession", "accession no.": "accession"}


def _clean_identifier(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if _IDENTIFIER.match(value) else None


def _clean_name(value: str | None) -> str | None:
    """A name as HL7 wants it (FAMILY^GIVEN for "FAMILY, GIVEN"), if it reads as a name."""
    value = re.sub(r"\s+", " ", (value or "").strip())
    letters = sum(ch.isalpha() for ch in value)
    if not value or len(value) > 64 or letters < 2 or letters < 0.6 * len(value.replace(" ", "")):
        return None
    if re.search(r"\d{3,}|[:;=<>{}\[\]|\\]", value):
        return None
    if value.count(",") == 1:
        family, given = (part.strip() for part in value.split(","))
        return f"{family}^{given}" if family and given else None
    return value


def _age(value: str | None) -> int | None:
    if value is None:
        return None
    match = _AGE_WORD.match(value.strip()) or re.match(r"^(\d{1,3})$", value.strip())
    return int(match["age"] if "age" in match.groupdict() else match[1]) if match else None


def _neighbour(line: Line, index: int, max_gap_mm: float = 40.0) -> Word | None:
    """The word right after words[index] on its line, if it is close enough to be its value."""
    if index + 1 >= len(line.words):
        return None
    this, following = line.words[index], line.words[index + 1]
    return following if following.box[0] - this.box[2] <= max_gap_mm else None


def read_demographics(header: Sequence[Line]) -> tuple[Demographics, list[str]]:
    """Demographics from the lines above the traces, each field only when its layout is clear."""
    found: dict[str, set[str]] = {}

    def offer(name: str, value: str | None) -> None:
        if value:
            found.setdefault(name, set()).add(value)

    for line in header:
        for index, word in enumerate(line.words):
            text = word.text.strip()
            # "Label: value" inside one text object ("Patienten-Nr.: 1247165", "Name: DOE^JANE").
            for name, value in labelled_fields(text).items():
                offer(name, value)
            if ":" in text:  # "Patienten-Nr.: 1247165": a label of ours and its value in one object
                label, value = (part.strip() for part in text.split(":", 1))
                if label.lower() in _LABEL_WORDS and value and " " not in value.strip():
                    offer(_LABEL_WORDS[label.lower()], value)
            key = text.rstrip(":").strip().lower()
            if key in _LABEL_WORDS and (value_word := _neighbour(line, index)) is not None:
                if value_word.text.lower().rstrip(":") not in _LABEL_WORDS:
                    offer(_LABEL_WORDS[key] if _LABEL_WORDS[key] != "age" else "age", value_word.text)
            if (muse := _MUSE_ID.match(text)) is not None:
                offer("patient_id", muse[1])
                if index > 0:  # GE MUSE: the name is the first word of the line that holds "ID:"
                    offer("patient_name", line.words[0].text)
                for later in line.words[index + 1:]:
                    if parse_datetime(later.text) is not None:
                        offer("acquired", later.text)
                        break
            if (birth := _BIRTH_WITH_AGE.match(text)) is not None and parse_date(birth["date"]) is not None:
                offer("birth_date", birth["date"])
                if not birth["age"].lstrip().startswith("<"):
                    offer("age", birth["age"].strip())
            if text.lower() in _SEX_WORDS:
                offer("sex_word", text.lower())
            if _AGE_WORD.match(text):
                offer("age", text)
            if _DATETIME_WORD.match(text):
                offer("acquired", text)
    _cardiosoft_layout(header, offer)
    return _demographics_from(found)


def _cardiosoft_layout(header: Sequence[Line], offer) -> None:  # noqa: ANN001 (a local closure)
    """GE CardioSoft: the name above "Patienten-Nr.:"; the date and time below it, one per line."""
    for position, line in enumerate(header):
        if not line.words or not line.words[0].text.lower().startswith("patienten-nr"):
            continue
        anchor = line.words[0].box[0]
        if position > 0 and abs(header[position - 1].words[0].box[0] - anchor) < 3.0:
            offer("patient_name", header[position - 1].words[0].text)
        below = [row.words[0].text for row in header[position + 1:position + 3]
                 if abs(row.words[0].box[0] - anchor) < 3.0]
        if len(below) == 2 and parse_date(below[0]) is not None and re.fullmatch(r"\d{1,2}:\d{2}(?::\d{2})?",
                                                                                  below[1].strip()):
            offer("acquired", f"{below[0]} {below[1].strip()}")


def _demographics_from(found: dict[str, set[str]]) -> tuple[Demographics, list[str]]:
    notes: list[str] = []

    def single(name: str) -> str | None:
        values = found.get(name, set())
        if len(values) > 1:
            notes.append(f"{name.replace('_', ' ')} printed with different values; left empty")
            return None
        return next(iter(values)) if values else None

    if "patient_name" not in found and "family_name" in found:  # printed as two labelled fields
        given = single("given_name")
        found["patient_name"] = {f"{single('family_name')}^{given}" if given else single("family_name") or ""}
    demographics = Demographics()
    raw_id = single("patient_id")
    demographics.patient_id = _clean_identifier(raw_id)
    if raw_id and demographics.patient_id is None:
        notes.append("patient id in the text is not a single clean identifier; left empty")
    raw_name = single("patient_name")
    demographics.patient_name = _clean_name(raw_name)
    if raw_name and demographics.patient_name is None:
        notes.append("patient name in the text does not read as a name; left empty")
    demographics.accession = _clean_identifier(single("accession"))
    if (birth := single("birth_date")) is not None:
        demographics.birth_date = parse_date(birth)
        if demographics.birth_date is None:
            notes.append("birth date in the text is ambiguous or unreadable; left empty")
    if (acquired := single("acquired")) is not None:
        demographics.acquired_at = parse_datetime(acquired)
        if demographics.acquired_at is None:
            notes.append("acquisition date in the text is ambiguous or unreadable; left empty")
    demographics.age_years = _age(single("age"))
    sexes = {parse_sex_noted(value, notes) for value in found.get("sex", set())} | {
        _SEX_WORDS[value] for value in found.get("sex_word", set())}
    sexes.discard(Sex.UNKNOWN)
    if len(sexes) == 1:
        demographics.sex = sexes.pop()
    elif len(sexes) > 1:
        notes.append("sex printed with different values; left unknown")
    return demographics, notes


# --- the whole layer --------------------------------------------------------------------------

_DEVICES = (("CardioSoft", "GE CardioSoft"), ("MUSE", "GE MUSE"), ("12SL", "GE 12SL"), ("MAC ", "GE MAC"),
            ("SCHILLER", "Schiller"), ("PageWriter", "Philips PageWriter"), ("TraceMaster", "Philips TraceMaster"),
            ("IntelliSpace", "Philips IntelliSpace ECG"), ("Philips", "Philips"), ("Mortara", "Mortara"),
            ("ELI ", "Mortara ELI"), ("Welch Allyn", "Welch Allyn"), ("Nihon Kohden", "Nihon Kohden"))


def device_of(text: str) -> str | None:
    """The cart or management system the text names, if any."""
    for needle, name in _DEVICES:
        if needle.lower() in text.lower():
            return name
    return None


def read_text_layer(pages: Sequence[PageContent], trace_tops: Sequence[float | None],
                    metadata_text: str = "") -> TextFindings:
    """Everything `TextFindings` holds, from the pages' words. `trace_tops` is, per page, the
    top of its traces in display mm (the header lies above it), or None when unknown."""
    words_per_page, readable = readable_words(pages)
    findings = TextFindings(readable=readable)
    all_text = " ".join(page.text for page in pages) + " " + metadata_text
    findings.device = device_of(all_text)
    if not any(page.words for page in pages):
        return findings
    if not readable:
        findings.notes.append("the text layer cannot be read (its fonts map no characters): "
                              "no measurements, statements or demographics taken from it")
        return findings
    header_lines: list[Line] = []
    statements: list[DeviceStatement] = []
    for words, trace_top in zip(words_per_page, trace_tops, strict=True):
        lines = lines_of(words)
        above = [line for line in lines if trace_top is None or line.top < trace_top]
        header_lines += above
        if not statements:
            _, _, holding = read_measurements(above)
            statements = read_statements(above, holding, trace_top)
    findings.measurements, notes, _ = read_measurements(header_lines)
    findings.notes += notes
    findings.statements = statements
    findings.demographics, findings.demographics_notes = read_demographics(header_lines)
    return findings
