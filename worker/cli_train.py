"""Commands of `ecg-worklist train ...`: the bundled training pipeline (see training/README.md).

    train synth OUT         the bundled synthetic set (simulated 12-lead ECGs with known labels)
    train corpus DIR OUT    training rows from a folder of records (PTB-XL, MIMIC-IV-ECG, manifest CSV)
    train sft / rl          supervised fine-tuning with modality dropout; GRPO/DAPO with evidence rewards
    train eval              held-out figures for a model and the protocol reader, side by side
    train export            a checkpoint folder both engines load
    train demo              all of the above on the synthetic set: the shipped demonstration model

Each subcommand lives beside the code it runs (training/*.py) and is registered here;
torch and transformers are imported only when a subcommand runs.
"""

from __future__ import annotations

import click


@click.group()
def train() -> None:
    """Train ECG-R1: corpus -> SFT -> RL -> eval -> export (tiny config on CPU, 8B config on GPUs)."""


commands: list[click.Command] = [train]
