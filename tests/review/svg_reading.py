"""Reading the review page's SVG drawing back into numbers, for tests: traces, label boxes, grid."""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree import ElementTree

import numpy as np

SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Drawing:
    root: ElementTree.Element
    traces: list[tuple[str, bool, np.ndarray, np.ndarray]]  # lead, rhythm strip?, x mm, y mm
    labels: list[tuple[str, tuple[float, float, float, float]]]  # text, (x, y, width, height) mm


def read_drawing(svg: str) -> Drawing:
    root = ElementTree.fromstring(svg)
    traces = []
    for line in root.iter(f"{SVG}polyline"):
        points = np.array([[float(v) for v in pair.split(",")] for pair in line.get("points").split()])
        traces.append((line.get("data-lead"), line.get("data-rhythm") == "1", points[:, 0], points[:, 1]))
    labels = [(text.text, tuple(float(v) for v in text.get("data-box").split()))
              for text in root.iter(f"{SVG}text") if text.get("class") == "lead-label"]
    return Drawing(root, traces, labels)


def label_hits(drawing: Drawing) -> list[str]:
    """Labels whose box a trace enters: any vertex inside it, or a segment crossing it."""
    hits = []
    for text, (x, y, width, height) in drawing.labels:
        for lead, _, xs, ys in drawing.traces:
            inside_x = (xs >= x) & (xs <= x + width)
            # Segments with one end on each side of the box's x range cross it too.
            idx = np.flatnonzero(inside_x)
            if len(idx) == 0:
                crossing = np.flatnonzero((xs[:-1] < x) & (xs[1:] > x + width))
                idx = np.concatenate([crossing, crossing + 1])
            else:
                idx = np.unique(np.clip(np.concatenate([idx - 1, idx, idx + 1]), 0, len(xs) - 1))
            if len(idx) and ys[idx].min() <= y + height and ys[idx].max() >= y:
                hits.append(f"{text} box {x:.1f},{y:.1f} crossed by {lead}")
    return hits


def grid_lines(drawing: Drawing, stroke_width: str) -> tuple[list[float], list[float]]:
    """(x of vertical lines, y of horizontal lines) of the grid path drawn with `stroke_width`."""
    path = next(p for p in drawing.root.iter(f"{SVG}path") if p.get("stroke-width") == stroke_width)
    d = path.get("d")
    return ([float(v) for v in re.findall(r"M([\d.]+) 0V", d)], [float(v) for v in re.findall(r"M0 ([\d.]+)H", d)])
