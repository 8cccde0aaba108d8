"""Measuring an ECG: beats, wave boundaries, per-lead numbers, global device-style values.

    beats          find and align the beats, the median beat
    atrial_waves   what is left between the QRS complexes of the atrial leads: flutter's rate and repeat
    delineate      wave boundaries on aligned rows (QRS, P, T onset/offset)
    beat_measures  amplitudes, durations, ST level, QRS shape labels per row
    features       the entry point: `measure(signal, fs) -> GroundingFeatures`
    grounding      measured arrays to the typed features, global intervals and axes
    measured       the typed features every later stage reads
"""
