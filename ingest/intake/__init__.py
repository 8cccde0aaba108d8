"""Intake: files arriving in an inbox or an archive walk, up to a registered, archived record.

    watch       which files are complete (size and mtime stable, or renamed from .part)
    archive     the content-addressed archive (sha256 of the file or of the WFDB record)
    quarantine  where unusable input is kept, with the reason written beside it
"""
