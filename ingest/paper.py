"""The standard 12-lead paper layout, shared by the model's image and the review page's drawing.

    I    0-2.5 s | aVR 2.5-5 s | V1 5-7.5 s | V4 7.5-10 s
    II           | aVL         | V2         | V5
    III          | aVF         | V3         | V6
    II, the 10 s rhythm strip

Kept apart from `ingest.prepare.render` (which draws with Pillow) so that the review host,
which draws SVG from a stored signal and installs no reader or imaging library, can use it.
"""

from __future__ import annotations

MM_PER_S = 25.0  # paper speed
MM_PER_MV = 10.0  # gain
COLUMN_S = 2.5  # each panel of the 3 x 4 grid shows 2.5 s
RHYTHM_S = 10.0  # the rhythm strip shows the whole window
LAYOUT: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
RHYTHM_LEAD = "II"
