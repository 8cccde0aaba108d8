"""model: ECG-R1 (Qwen3-VL + ECG signal encoder), its processor, checkpoint loading and engines; see README.md."""
