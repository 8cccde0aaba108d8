"""eval-real's figures from readings, without a model: rhythm class, stated heart rate, variety."""

from __future__ import annotations

from training.evaluate_real import RealRecordRow, _figures, stated_heart_rate


def test_stated_heart_rate_is_the_first_one_written() -> None:
    assert stated_heart_rate("12 of 12 leads measured. Heart rate 48 bpm (< 60 bpm): bradycardia.") == 48.0
    assert stated_heart_rate("Heart rate is approximately 105 bpm; later heart rate 90 bpm") == 105.0
    assert stated_heart_rate("No rate stated.") is None


def test_figures_count_rhythm_heart_rate_and_distinct_label_sets() -> None:
    def row(key: str, rhythm: str | None, measured: float | None, labels: list[str], said: str, hr: float | None):
        return RealRecordRow(key=key, reference_rhythm=rhythm, measured_hr=measured,
                             readings={"model/signal+image": {"labels": labels, "rhythm": said, "hr": hr}})

    rows = [row("a", "sinus rhythm", 72.0, ["sinus rhythm"], "sinus rhythm", 75.0),
            row("b", "sinus tachycardia", 118.0, ["sinus rhythm"], "sinus rhythm", 95.0),
            row("c", None, 60.0, ["sinus rhythm"], "sinus rhythm", None),
            row("d", "atrial fibrillation", None, ["atrial fibrillation"], "atrial fibrillation", 130.0)]
    f = _figures("model", "signal+image", rows)
    assert (f.rhythm_records, f.rhythm_right) == (3, round(2 / 3, 4))
    # a: 3 bpm off (in), b: 23 off (out), c: no rate stated (a miss); d has no measured rate
    assert (f.hr_records, f.hr_within_10, f.hr_mean_abs_error) == (3, round(1 / 3, 4), 13.0)
    assert (f.distinct_label_sets, f.distinct_over) == (2, 4)
