"""Measuring an ECG: beats, wave boundaries, per-lead numbers, global device-style values.

    beats          find and align the beats, the median beat
    delineate      wave boundaries on aligned rows (QRS, P, T onset/offset)
    beat_measures  amplitudes, durations, ST level, QRS shape labels per row
    features       the entry point: `measure(signal, fs) -> GroundingFeatures`
    grounding      measured arrays to the typed features, global intervals and axes
    measured       the typed features every later stage reads
"""
