"""Patient identifiers as search keys: how a typed MRN, name or accession meets the stored one.

`search_key("Müller^Anna")` is "muller anna": accents dropped, case folded, the HL7/DICOM
separators (^) and commas turned into spaces, runs of spaces collapsed. The store keeps the
key of each study's patient id, name and accession in indexed columns (`studies.*_key`,
filled by `reports.store.save_prepared`), and the review page's search puts what the
reviewer typed through the same function, so "MULLER, anna" finds "Müller^Anna".
"""

from __future__ import annotations

import unicodedata

# Column sizes of the key columns (migrations/versions/0004_patient_search.py).
ID_KEY_LENGTH = 128
NAME_KEY_LENGTH = 255


def search_key(text: str | None, limit: int = NAME_KEY_LENGTH) -> str | None:
    """The comparable form of an identifier or a name; None for nothing."""
    if not text:
        return None
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    spaced = plain.casefold().replace("^", " ").replace(",", " ")
    key = " ".join(spaced.split())[:limit].strip()
    return key or None
