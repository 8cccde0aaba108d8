"""Effect of the page style on an ECG-R1 checkpoint: the same real recordings, drawn two ways.

Each recording of data/real (the `test` split, those with a device heart rate) is read and
prepared once, then interpreted from signal + page with the page drawn in each style of
`ingest.prepare.render.PAGE_STYLES` (everything else from the checkpoint's own contract).
For each style it prints: how often the rhythm class of the answer matches the dataset's
reference (`ingest.validation.labels`), how many outputs state a heart rate, and the mean
absolute difference between that rate and the recording device's.

Default checkpoint: the bundled demonstration model (trained on our own page style only), so
the figures are DEMONSTRATION-MODEL figures, not those of the released ECG-R1. On a GPU host:
    python benchmarks/page_style.py --model /models/ECG-R1-8B-RL --device cuda --records 40

    .venv/bin/python benchmarks/page_style.py [--records 8] [--max-new-tokens 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "model" / "demo"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--records", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    from ingest.prepare import prepare
    from ingest.prepare.render import PAGE_STYLES
    from ingest.readers.read import read_ecg
    from ingest.validation.labels import reader_rhythm, reference_labels, rhythm_correct
    from ingest.validation.references import load_references
    from model.engines.hf_engine import HfEngine
    from reports.verify import extract_values

    references = [r for r in load_references(split="test") if r.device is not None and r.device.hr_bpm]
    # Round robin over the sources, so a few records still span several devices and datasets.
    by_source: dict[str, list] = {}
    for reference in sorted(references, key=lambda r: (r.source, r.record)):
        by_source.setdefault(reference.source, []).append(reference)
    references = [group[i] for i in range(max(map(len, by_source.values()), default=0))
                  for group in by_source.values() if i < len(group)][:args.records]
    prepared = [prepare(read_ecg(r.file(REPO / "data" / "real"))) for r in references]
    engine = HfEngine.from_pretrained(args.model, device=args.device, max_new_tokens=args.max_new_tokens,
                                      batch_size=args.batch_size)
    own = engine.contract
    print(f"checkpoint {args.model} ({'DEMONSTRATION model' if engine.is_demonstration else 'not a demonstration'}),"
          f" its own page style: {own.image_style}; {len(references)} recordings: "
          + ", ".join(f"{r.source}/{r.record}" for r in references))
    print(f"{'page style':<16} {'rhythm right':>12} {'HR stated':>9} {'|HR - device| bpm':>18} {'s/ECG':>6}")
    for style in PAGE_STYLES:
        engine.contract = own.model_copy(update={"image_style": style})
        started = time.perf_counter()
        outputs = engine.interpret(prepared)
        seconds = (time.perf_counter() - started) / len(prepared)
        right, errors = 0, []
        for reference, output in zip(references, outputs, strict=True):
            expected = reference_labels(reference.codes).rhythm
            right += bool(expected) and rhythm_correct(expected, reader_rhythm(output.parsed.labels))
            rates = [c.value for c in extract_values(output.raw_text) if c.field == "hr_bpm"]
            if rates:
                errors.append(abs(rates[0] - reference.device.hr_bpm))
        mean = f"{statistics.mean(errors):.1f}" if errors else "-"
        print(f"{style + (' (own)' if style == own.image_style else ''):<16} {right:>7}/{len(references):<4} "
              f"{len(errors):>5}/{len(references):<3} {mean:>18} {seconds:>6.1f}")


if __name__ == "__main__":
    main()
