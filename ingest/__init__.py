"""ingest: see README.md for this stage of the ECG's journey."""
