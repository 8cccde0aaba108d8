"""Validation on real recordings: how our measurements and the protocol reader compare with references.

    data/real/references.csv ----references.load_references----> Reference per record
    data/real/ludb/*.{i,ii,...} --references.ludb_boundaries----> annotated wave boundaries per beat
    record --run.run_ours----------> RecordResult (intervals, global boundaries, reader labels)
           --run.run_neurokit2-----> RecordResult (the open delineator beside us, boundaries and intervals)
    results + references --metrics--> boundary errors, interval agreement, label and rhythm figures
                         --report----> the tables `ecg-worklist validate` prints, JSON, per-record CSV,
                                       and the comparison with the committed baseline

`labels` maps the references' original codes (SNOMED CT from the PhysioNet/CinC challenge
headers, PTB-XL SCP statements, LUDB's statements, a device's statements) to the protocol
reader's vocabulary, and lists the codes it does not map instead of guessing them.
"""
