"""From a canonical `Ecg` to a `PreparedEcg`: what the interpreters need, computed once on CPU.

    Ecg --(resample to 500 Hz, fix a 10 s window)--> model_signal (12 x 5000, mV)
        --(delineate and measure)----------------> features (GroundingFeatures)
        --(the 12-lead paper layout, ON DEMAND)--> page() (PIL, in memory)

The image is not drawn here: most readers never look at it (the protocol reader reads the
features), and a model whose checkpoint reads images draws it from the model window when it
asks (`PreparedEcg.page()`, a few milliseconds), so no stage writes an image and reads it
back. A PDF's first page is its image, whether or not a signal was recovered from it (what
the device printed, not a copy drawn from the recovered signal): `image` holds it when the
reader rendered it, and a stage that kept only the file gives a `page_loader` that renders
it again when asked. A PDF without a recovered signal (a scan too poor to digitise) has no
features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.ecg import MODEL_SAMPLING_RATE_HZ, STANDARD_LEADS, Ecg
from ingest.measure.measured import GroundingFeatures


@dataclass
class PreparedEcg:
    ecg: Ecg
    model_signal: np.ndarray | None  # (12, 5000) float32 mV in STANDARD_LEADS order, or None
    image: Any  # PIL.Image.Image once there is one: the source's page, or the 12-lead `page()` drew
    features: GroundingFeatures | None  # None when there is no signal to measure
    window_note: str = ""  # how the 10 s window was taken (padding/cropping policy applied)
    notes: list[str] = field(default_factory=list)
    # Renders the source's own page (a PDF kept on disk) when `page()` is first asked for it.
    page_loader: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    # Pages drawn from the model window, by style (a source's own page is never redrawn).
    _drawn: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def modalities(self) -> list[str]:
        """What an interpreter can be given: the signal, the image (drawn or loaded on demand), or both."""
        present = []
        if self.model_signal is not None:
            present.append("ecg")
        if self.image is not None or self.page_loader is not None or self.model_signal is not None:
            present.append("image")
        return present

    def page(self, style: str = "ecgwl-12lead") -> Any:
        """The image an image reader sees (PIL RGB), made on first call and kept: the source's
        page when it has one, else the 12-lead page drawn from the model window in `style`
        (`ingest.prepare.render.PAGE_STYLES`: our own layout, or the ECG-image-kit-like page
        the released ECG-R1 was trained on; a checkpoint's config says which)."""
        if self.image is None and self.page_loader is not None:
            self.image = self.page_loader()
        if self.image is not None and not any(self.image is drawn for drawn in self._drawn.values()):
            return self.image  # the source's own page, whatever the style
        if self.model_signal is None:
            return None
        if style not in self._drawn:
            from ingest.prepare.render import render_page

            self._drawn[style] = render_page(self.model_signal, MODEL_SAMPLING_RATE_HZ, style=style)
            if style == "ecgwl-12lead":
                self.image = self._drawn[style]
        return self._drawn[style]


def prepare(ecg: Ecg) -> PreparedEcg:
    """Prepare one ECG for interpretation. Raises `IngestError` for unusable signals."""
    # Imported here so that reading `PreparedEcg` does not pull in the measurement code.
    from ingest.measure.features import measure
    from ingest.prepare.signal import to_model_window

    if ecg.signal is None:
        page = ecg.pages[0] if ecg.pages else None
        return PreparedEcg(ecg=ecg, model_signal=None, image=page, features=None,
                           notes=["no signal in source: image-only interpretation"])

    window = to_model_window(ecg)
    features = measure(_unrecorded_as_nan(ecg, window.signal), window.sampling_rate_hz,
                       recorded_rate_hz=ecg.sampling_rate_hz)
    # A PDF's signal was read off its page: the page itself (what the device printed, scan
    # marks and all) stays the image, for people and for the model; a rendering of the
    # recovered signal would only be a copy of it. Other sources: drawn on demand (page()).
    image = ecg.pages[0] if ecg.pages else None
    return PreparedEcg(ecg=ecg, model_signal=window.signal, image=image, features=features,
                       window_note=window.note)


def _unrecorded_as_nan(ecg: Ecg, window: np.ndarray) -> np.ndarray:
    """The model window with NaN again where the source had no samples, for measurement.

    The model reads those samples as 0 (as ECG-R1's release does); measurement must know
    they were never recorded (a printed 3x4 page shows each lead for 2.5 s only), so it
    gets them back as NaN. Sources without missing samples are passed through unchanged.
    """
    signal = np.asarray(ecg.signal)
    if np.isfinite(signal).all() or not ecg.sampling_rate_hz:
        return window
    rows = [ecg.lead_names.index(lead) for lead in STANDARD_LEADS]
    recorded = np.isfinite(signal[rows])
    # Each window sample's nearest source sample (the window starts at the source's start).
    source_index = np.round(np.arange(window.shape[1]) * ecg.sampling_rate_hz / MODEL_SAMPLING_RATE_HZ).astype(int)
    inside = source_index < recorded.shape[1]
    mask = np.ones_like(window, dtype=bool)  # padding past the record stays as the window has it
    mask[:, inside] = recorded[:, source_index[inside]]
    return np.where(mask, window, np.nan)
