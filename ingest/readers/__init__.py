"""One reader per source format (DICOM waveform, WFDB, PDF), each returning a canonical `Ecg`.

`ingest.readers.read.read_ecg` picks the reader from the file's content; the readers share the
lead rule (`leads`) and the demographics helpers (`demographics`).
"""
