"""Is there an ECG in this PDF at all? A PDF with none goes to quarantine with the reason.

An inbox receives what people put in it: letters, invoices, blank scans, photographs. Text
alone proves nothing (a discharge letter says "ECG: sinus rhythm, QRS 90 ms"), so a PDF is
taken as an ECG only when one of its pages SHOWS one:

- vector traces read as leads (`vector`), or drawn traces in three or more rows on a 1 or
  5 mm grid or beside printed lead labels; or
- a page image with an ECG grid and rows of traces (`raster.looks_like_ecg`), whether or
  not its signal could be digitised.

What was found is summarised for the provenance; when nothing was, the reason lists what
was looked for, so a person reading the quarantine note knows why.
"""

from __future__ import annotations

from dataclasses import dataclass

ECG_GRID_OR_TRACES = "traces"


@dataclass(frozen=True)
class PageEvidence:
    """What one page shows."""

    vector_leads: int = 0  # traces read as leads
    vector_traces: int = 0  # drawn polylines that look like traces
    vector_rows: int = 0  # distinct rows those lie in
    vector_grid: bool = False  # a drawn grid of 1 or 5 mm
    lead_labels: int = 0  # distinct standard lead labels in the text
    raster_ecg: bool = False  # the page image has an ECG grid and trace rows

    @property
    def shows_ecg(self) -> bool:
        # Traces in separate rows on an ECG grid, or beside lead labels (a chart's series share
        # one plot area, and a chart's grid is rarely 1 or 5 mm).
        drawn = self.vector_traces >= 3 and self.vector_rows >= 3 and (self.vector_grid or self.lead_labels >= 6)
        return self.vector_leads > 0 or drawn or self.raster_ecg


def no_ecg_reason(n_pages: int, any_text: bool) -> str:
    """The quarantine reason for a PDF none of whose pages shows an ECG."""
    text = "its text has no ECG traces to go with it" if any_text else "it has no text layer"
    return (f"no ECG found in this PDF ({n_pages} page(s)): no traces drawn as lines, no ECG grid with "
            f"rows of traces in the page images, and {text}; not an ECG study")
