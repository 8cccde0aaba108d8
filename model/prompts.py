"""The release's prompt texts, in a module without torch so that data tools import them cheaply.

`model.processing_ecg_r1` builds prompts from these; `training.rows` writes them into corpus rows.
"""

from __future__ import annotations

SYSTEM_PROMPT = ("You are a helpful, harmless clinical ECG assistant. "
                 "Provide concise, evidence-based interpretations.")
INSTRUCTION = ("Interpret the provided ECG image, identify key features and abnormalities in each lead, "
               "and generate a clinical diagnosis that is supported by the observed evidence.")
ECG_TAG, IMAGE_TAG = "<ecg>", "<image>"

__all__ = ["ECG_TAG", "IMAGE_TAG", "INSTRUCTION", "SYSTEM_PROMPT"]
