"""One PDF page as the other PDF modules see it: its image, its words and its drawn lines.

    open_document(path)  -> pdfium document (IngestError for a damaged or locked file)
    read_page(page, ...) -> PageContent:
        image   the page rendered as an RGB PIL image (what people and the image model see);
                with render=False drawn only when `render()` is first called, so a page whose
                traces are read as vectors is never drawn in the pipeline
        words   every text object with its box, in display millimetres
        paths   every stroked path as polylines of points, in display millimetres, with colour
        images  how many raster images the page draws (a scan is one big image)

Display millimetres. Everything downstream works in one coordinate system: millimetres on
the page as it is displayed (the page's /Rotate applied), origin at the top-left corner,
x to the right, y down, from the crop box. PDF user space is 1/72 inch, so 1 unit =
25.4/72 mm before any scaling the exporter applied (which the grid tells, see `vector`).
Paths inside form XObjects are followed with their form's matrix composed in.

pypdfium2 only (Apache-2.0/BSD): never PyMuPDF (AGPL) nor poppler (GPL).
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ingest.errors import IngestError
from ingest.readers.limits import DEFAULT_LIMITS, InputLimits, check_page_pixels

MM_PER_PT = 25.4 / 72.0
MAX_PAGE_WIDTH_PX = 2200
MAX_SCALE = 300 / 72  # never beyond 300 dpi, even for a small page
# A 12-lead page draws a few thousand path segments per lead and a grid; far more means a
# drawing that is not an ECG (a map, a chart export): its paths are not read, only rendered.
MAX_PATH_SEGMENTS = 400_000
_MAX_FORM_DEPTH = 8

_PDFIUM_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD


@dataclass(frozen=True)
class Word:
    """One text object: its text and its box (x0, y0, x1, y1) in display mm."""

    text: str
    box: tuple[float, float, float, float]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Polyline:
    """One subpath of a stroked path: (n, 2) points in display mm, and how it was drawn."""

    points: np.ndarray
    colour: tuple[int, int, int]
    closed: bool = False
    # (x0, y0, x1, y1) of the points. A page has hundreds of grid lines, each asked several times
    # what shape it is: the page's reader works the boxes out for all of them in one array
    # operation and passes them in; left out, they are worked out here.
    bounds: tuple[float, float, float, float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.bounds is None:
            low, high = self.points.min(axis=0), self.points.max(axis=0)
            object.__setattr__(self, "bounds", (float(low[0]), float(low[1]), float(high[0]), float(high[1])))

    @property
    def x_extent(self) -> float:
        return self.bounds[2] - self.bounds[0]

    @property
    def y_extent(self) -> float:
        return self.bounds[3] - self.bounds[1]


@dataclass
class PageContent:
    """What one page holds. `paths_complete` is False when MAX_PATH_SEGMENTS cut the reading short."""

    index: int
    width_mm: float
    height_mm: float
    image: Any  # PIL.Image.Image, RGB; None until `render()` for a page read with render=False
    text: str
    words: list[Word] = field(default_factory=list)
    paths: list[Polyline] = field(default_factory=list)
    images: int = 0
    paths_complete: bool = True
    # The open pdfium page and its render scale while the image is not drawn yet (render=False).
    pdfium_page: Any = field(default=None, repr=False, compare=False)
    scale: float = 0.0

    def render(self) -> Any:
        """The page as an RGB image, drawn on the first call (from the still open page) and kept."""
        if self.image is None and self.pdfium_page is not None:
            self.image = _render(self.pdfium_page, self.scale)
        return self.image

    def close(self) -> None:
        """Let pdfium free the page (nothing more can be drawn from it)."""
        if self.pdfium_page is not None:
            self.pdfium_page.close()
            self.pdfium_page = None

    @property
    def pixels_per_mm(self) -> float:
        return self.render().width / self.width_mm


def open_document(path: Path) -> Any:
    """The pdfium document, or an IngestError naming why it cannot be opened."""
    import pypdfium2 as pdfium  # here, so that reading other formats does not load pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD_ERROR:
            raise IngestError(path, "password-protected PDF: cannot be opened without its password") from exc
        # pdfium refuses damaged files and files without pages alike (and its error code
        # for the latter is whatever the previous failure left), so the reason names both.
        raise IngestError(path, f"unreadable PDF, damaged or without pages ({exc})") from exc


def check_page_sizes(document: Any, n_pages: int, path: Path, limits: InputLimits) -> None:
    """Every page's rendered size, and their total, against the limits before any is rendered
    (from the page boxes alone: no page is loaded or drawn)."""
    total = 0
    for index in range(n_pages):
        width, height = document.get_page_size(index)  # as displayed, like `render_scale`
        if width <= 0 or height <= 0:
            raise IngestError(path, f"page {index + 1} has no size")
        scale = min(MAX_PAGE_WIDTH_PX / width, MAX_SCALE)
        width_px, height_px = math.ceil(width * scale), math.ceil(height * scale)
        check_page_pixels(path, index + 1, width_px, height_px, limits, pixels_so_far=total)
        total += width_px * height_px


def render_scale(page: Any) -> float:
    """The render scale for a page: at most MAX_PAGE_WIDTH_PX wide (displayed), at most 300 dpi."""
    width, height = _display_size_pt(page)
    return min(MAX_PAGE_WIDTH_PX / width, MAX_SCALE)


def page_pixels(page: Any) -> tuple[int, int]:
    """(width, height) in pixels the page renders to (at `render_scale`)."""
    width_pt, height_pt = _display_size_pt(page)
    scale = render_scale(page)
    return math.ceil(width_pt * scale), math.ceil(height_pt * scale)


def _render(page: Any, scale: float) -> Any:
    image = page.render(scale=scale).to_pil()  # an independent copy of pdfium's bitmap
    if image.mode != "RGB":  # grey or RGBA renderings; RGB is already what we want
        image = image.convert("RGB")
    return image


def read_page(page: Any, index: int, path: Path, limits: InputLimits = DEFAULT_LIMITS,
              pixels_so_far: int = 0, *, render: bool = True) -> PageContent:
    """Read one page's words and paths, and render it. IngestError for a damaged page, and
    `LimitExceeded` (before rendering) for a page larger than `limits` allow.

    `render=False` leaves the drawing to `PageContent.render()` and the page open for it: the
    caller closes it (`PageContent.close()`) when done. Rendering a page costs more than reading
    its paths, and a page whose traces are vectors need never be drawn in the pipeline."""
    keep_open = False
    try:
        width_pt, height_pt = _display_size_pt(page)
        if width_pt <= 0 or height_pt <= 0:
            raise IngestError(path, f"page {index + 1} has no size")
        scale = render_scale(page)
        check_page_pixels(path, index + 1, math.ceil(width_pt * scale), math.ceil(height_pt * scale), limits,
                          pixels_so_far=pixels_so_far)
        transform = _DisplayTransform.of(page)
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            content = PageContent(index=index, width_mm=width_pt * MM_PER_PT, height_mm=height_pt * MM_PER_PT,
                                  image=_render(page, scale) if render else None, text=text,
                                  pdfium_page=None if render else page, scale=scale)
            _read_objects(page, textpage, transform, content)
        finally:
            textpage.close()
        keep_open = not render
    except IngestError:
        raise
    except Exception as exc:  # pdfium reports damaged page content in several ways
        raise IngestError(path, f"page {index + 1} could not be rendered ({exc})") from exc
    finally:
        if not keep_open:
            page.close()
    return content


def _display_size_pt(page: Any) -> tuple[float, float]:
    left, bottom, right, top = page.get_cropbox()
    width, height = right - left, top - bottom
    return (height, width) if page.get_rotation() in (90, 270) else (width, height)


@dataclass(frozen=True)
class _DisplayTransform:
    """PDF page space (points, y up, before /Rotate) to display mm (y down, rotation applied)."""

    left: float
    top: float
    width: float
    height: float
    rotation: int

    @classmethod
    def of(cls, page: Any) -> _DisplayTransform:
        left, bottom, right, top = page.get_cropbox()
        return cls(left, top, right - left, top - bottom, page.get_rotation() % 360)

    def points(self, xy: np.ndarray) -> np.ndarray:
        u = xy[:, 0] - self.left  # unrotated, y down, in points
        v = self.top - xy[:, 1]
        if self.rotation == 90:
            u, v = self.height - v, u
        elif self.rotation == 180:
            u, v = self.width - u, self.height - v
        elif self.rotation == 270:
            u, v = v, self.width - u
        return np.column_stack([u, v]) * MM_PER_PT

    def box(self, left: float, bottom: float, right: float, top: float) -> tuple[float, float, float, float]:
        corners = self.points(np.array([[left, bottom], [right, top]], dtype=np.float64))
        x0, x1 = sorted(corners[:, 0])
        y0, y1 = sorted(corners[:, 1])
        return float(x0), float(y0), float(x1), float(y1)


def _read_objects(page: Any, textpage: Any, transform: _DisplayTransform, content: PageContent) -> None:
    import pypdfium2.raw as pdfium_c

    budget = [MAX_PATH_SEGMENTS]
    count = pdfium_c.FPDFPage_CountObjects(page.raw)
    objects = [pdfium_c.FPDFPage_GetObject(page.raw, i) for i in range(count)]
    stroked: list[_StrokedPath] = []
    _walk(objects, None, textpage, transform, content, stroked, budget, depth=0, scratch=_PathScratch())
    content.paths = _polylines(stroked, transform)
    content.paths_complete = budget[0] > 0


def _matrix(obj: Any) -> np.ndarray:
    """The object's matrix as a 3x3 (row vector convention: [x y 1] @ M)."""
    import pypdfium2.raw as pdfium_c

    m = pdfium_c.FS_MATRIX()
    if not pdfium_c.FPDFPageObj_GetMatrix(obj, m):
        return np.eye(3)
    return np.array([[m.a, m.b, 0.0], [m.c, m.d, 0.0], [m.e, m.f, 1.0]])


# An object's matrix as six numbers (a, b, c, d, e, f): x' = a x + c y + e, y' = b x + d y + f.
_Affine = tuple[float, float, float, float, float, float]


def _affine(obj: Any, handle: int, outer: np.ndarray | None, scratch: _PathScratch) -> _Affine:
    """The object's matrix to page space; `outer` is the enclosing forms' matrix, None on the page itself.

    Most objects lie on the page itself: their matrix is taken as pdfium gives it, without the
    3x3 array and product that a page of hundreds of grid lines would otherwise pay for each."""
    if outer is None:
        m = scratch.matrix
        if not _path_calls().get_matrix(handle, scratch.matrix_at):
            return (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
        return (m.a, m.b, m.c, m.d, m.e, m.f)
    full = (_matrix(obj) @ outer).tolist()
    return (full[0][0], full[0][1], full[1][0], full[1][1], full[2][0], full[2][1])


class _PathCalls(NamedTuple):
    draw_mode: Any  # (object, int* fill mode, int* stroke) -> ok
    count_segments: Any  # (object) -> segments, -1 on failure
    stroke_colour: Any  # (object, uint* r, g, b, a) -> ok
    get_matrix: Any  # (object, FS_MATRIX*) -> ok


@functools.lru_cache(maxsize=1)
def _path_calls() -> _PathCalls:
    """pdfium's per-path functions, re-declared with plain pointer arguments, as `_segment_calls` does.

    A page has hundreds of paths (every grid line is one), and each is asked its draw mode, segment
    count, colour and matrix: through pypdfium2's bindings each call converts its typed handle and
    out-parameters (a fifth of a vector page's reading). Same library, same functions."""
    import pypdfium2.raw as pdfium_c

    def address(function: Any) -> int:
        return ctypes.cast(function, ctypes.c_void_p).value

    pointer, integer = ctypes.c_void_p, ctypes.c_int
    return _PathCalls(
        draw_mode=ctypes.CFUNCTYPE(integer, pointer, pointer, pointer)(address(pdfium_c.FPDFPath_GetDrawMode)),
        count_segments=ctypes.CFUNCTYPE(integer, pointer)(address(pdfium_c.FPDFPath_CountSegments)),
        stroke_colour=ctypes.CFUNCTYPE(integer, pointer, pointer, pointer, pointer, pointer)(
            address(pdfium_c.FPDFPageObj_GetStrokeColor)),
        get_matrix=ctypes.CFUNCTYPE(integer, pointer, pointer)(address(pdfium_c.FPDFPageObj_GetMatrix)),
    )


class _PathScratch:
    """The out-parameters of `_path_calls`, made once per page instead of once per path, with their addresses."""

    def __init__(self) -> None:
        import pypdfium2.raw as pdfium_c

        self.fill, self.stroke = ctypes.c_int(), ctypes.c_int()
        self.rgba = (ctypes.c_uint * 4)()
        self.matrix = pdfium_c.FS_MATRIX()
        self.fill_at, self.stroke_at = ctypes.addressof(self.fill), ctypes.addressof(self.stroke)
        size = ctypes.sizeof(ctypes.c_uint)
        self.rgba_at = tuple(ctypes.addressof(self.rgba) + i * size for i in range(4))
        self.matrix_at = ctypes.addressof(self.matrix)


@dataclass(frozen=True)
class _StrokedPath:
    """One stroked path object as pdfium gives it: its segments in its own space, and how it is drawn.

    A long path (a trace) comes as arrays; a short one (a grid line) as plain lists, x and y
    interleaved, which `_polylines` gathers with the page's other short paths into one array."""

    xy: np.ndarray | list[float]  # (n, 2) or 2n flat, PDF user space of the object
    kinds: np.ndarray | list[int]  # FPDF_SEGMENT_* per segment
    closes: np.ndarray | list[int]  # close flag per segment
    matrix: _Affine  # the object's space to page space
    colour: tuple[int, int, int]


def _walk(objects: list[Any], outer: np.ndarray | None, textpage: Any, transform: _DisplayTransform,
          content: PageContent, stroked: list[_StrokedPath], budget: list[int], depth: int,
          scratch: _PathScratch) -> None:
    import pypdfium2.raw as pdfium_c

    for obj in objects:
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind == pdfium_c.FPDF_PAGEOBJ_TEXT:
            word = _word(obj, textpage, outer, transform)
            if word is not None:
                content.words.append(word)
        elif kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            content.images += 1
        elif kind == pdfium_c.FPDF_PAGEOBJ_PATH and budget[0] > 0:
            path = _stroked_path(obj, outer, budget, scratch)
            if path is not None:
                stroked.append(path)
        elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < _MAX_FORM_DEPTH:
            n = pdfium_c.FPDFFormObj_CountObjects(obj)
            children = [pdfium_c.FPDFFormObj_GetObject(obj, i) for i in range(max(n, 0))]
            enclosing = np.eye(3) if outer is None else outer
            _walk(children, _matrix(obj) @ enclosing, textpage, transform, content, stroked, budget, depth + 1,
                  scratch)


def _word(obj: Any, textpage: Any, outer: np.ndarray | None, transform: _DisplayTransform) -> Word | None:
    import pypdfium2.raw as pdfium_c

    size = pdfium_c.FPDFTextObj_GetText(obj, textpage.raw, None, 0)  # bytes, with the UTF-16 NUL
    if size <= 2:
        return None
    buffer = ctypes.create_string_buffer(size)
    pdfium_c.FPDFTextObj_GetText(obj, textpage.raw, ctypes.cast(buffer, ctypes.POINTER(pdfium_c.FPDF_WCHAR)), size)
    text = buffer.raw[: size - 2].decode("utf-16-le", errors="replace")
    # Non-breaking spaces and hyphens (U+00A0, U+2011) as plain ones; NULs some exporters pad with.
    text = text.replace("\x00", "").replace("\xa0", " ").replace("\u2011", "-").strip()
    if not text:
        return None
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))
    if not pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
        return None
    corners = np.array([[left.value, bottom.value, 1.0], [right.value, top.value, 1.0]])
    # Bounds of an object inside a form are in the form's space: carry them to the page.
    page_corners = corners[:, :2] if outer is None else (corners @ outer)[:, :2]
    (x0, y0), (x1, y1) = page_corners.min(axis=0), page_corners.max(axis=0)
    return Word(text=text, box=transform.box(x0, y0, x1, y1))


def _colour(handle: int, scratch: _PathScratch) -> tuple[int, int, int]:
    if not _path_calls().stroke_colour(handle, *scratch.rgba_at):
        return (0, 0, 0)
    rgba = scratch.rgba
    return (rgba[0], rgba[1], rgba[2])


@functools.lru_cache(maxsize=1)
def _segment_calls() -> tuple[Any, Any, Any, Any]:
    """pdfium's four per-segment functions, re-declared with plain pointer arguments.

    A trace has thousands of points and each costs four pdfium calls. Through pypdfium2's
    bindings a call converts its arguments to typed handles and wraps the returned segment in
    a pointer object (~0.4-0.7 us a call); the same functions declared here take and return
    bare addresses, which halves the cost of reading a page's traces. Same library, same
    functions: only the Python-side wrapping differs.
    """
    import pypdfium2.raw as pdfium_c

    def address(function: Any) -> int:
        return ctypes.cast(function, ctypes.c_void_p).value

    pointer, integer = ctypes.c_void_p, ctypes.c_int
    get_segment = ctypes.CFUNCTYPE(pointer, pointer, integer)(address(pdfium_c.FPDFPath_GetPathSegment))
    get_point = ctypes.CFUNCTYPE(integer, pointer, pointer, pointer)(address(pdfium_c.FPDFPathSegment_GetPoint))
    get_type = ctypes.CFUNCTYPE(integer, pointer)(address(pdfium_c.FPDFPathSegment_GetType))
    get_close = ctypes.CFUNCTYPE(integer, pointer)(address(pdfium_c.FPDFPathSegment_GetClose))
    return get_segment, get_point, get_type, get_close


def _segments(handle: int, n: int) -> tuple[np.ndarray | list[float], np.ndarray | list[int], np.ndarray | list[int]]:
    """The first n segments of a path object: x and y, segment types, close flags.

    A long path (a trace) is read in one copy, as arrays, when pdfium's own answers show that its
    segments lie side by side in memory as `_SEGMENT_LAYOUT` says; otherwise, and for short
    paths, one segment at a time, as plain lists (`_segments_one_by_one`)."""
    if n >= _BULK_MIN_SEGMENTS:
        bulk = _segments_in_one_copy(handle, n)
        if bulk is not None:
            return bulk
    return _segments_one_by_one(handle, n)


# How pdfium keeps a path's segments (CFX_Path::Point in a std::vector): x and y as 32-bit floats,
# then the type (0 line, 1 Bezier, 2 move: the same numbers as FPDF_SEGMENT_*) and the close flag as
# one byte each, padded to 12 bytes. A pdfium build that lays them out otherwise fails the checks in
# `_segments_in_one_copy` and is read segment by segment: slower, never wrong.
_SEGMENT_LAYOUT = np.dtype({"names": ["x", "y", "kind", "close"], "formats": ["<f4", "<f4", "u1", "u1"],
                            "offsets": [0, 4, 8, 9], "itemsize": 12})
_BULK_MIN_SEGMENTS = 64
_CHECKED_SEGMENTS = 9  # segments compared with pdfium's per-segment answers, spread over the path


def _segments_in_one_copy(handle: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The n segments copied at once from where pdfium keeps them, or None when its per-segment
    answers do not match that reading (addresses not evenly spaced, or any checked segment's point,
    type or close flag different).

    Why: a 10 s trace is thousands of segments and each costs four calls through ctypes (about
    30 ms of the 45 a vector PDF page took to read); one copy costs microseconds. The copy is
    checked against pdfium's own API on segments spread over the whole path, including its ends,
    so a layout that differs is caught and the slow reading used instead."""
    get_segment, get_point, get_type, get_close = _segment_calls()
    first, last = get_segment(handle, 0), get_segment(handle, n - 1)
    stride = _SEGMENT_LAYOUT.itemsize
    if not first or not last or last - first != stride * (n - 1) or get_segment(handle, 1) - first != stride:
        return None
    records = np.frombuffer((ctypes.c_char * (stride * n)).from_address(first), dtype=_SEGMENT_LAYOUT).copy()
    xy = (ctypes.c_float * 2)()
    x_address = ctypes.addressof(xy)
    for i in np.unique(np.linspace(0, n - 1, _CHECKED_SEGMENTS).astype(int)).tolist():
        segment = get_segment(handle, i)
        if segment != first + stride * i or not get_point(segment, x_address, x_address + 4):
            return None
        record = records[i]
        if (xy[0], xy[1]) != (record["x"], record["y"]) or get_type(segment) != record["kind"] \
                or bool(get_close(segment)) != bool(record["close"]):
            return None
    points = np.column_stack([records["x"], records["y"]]).astype(np.float64)
    return points, records["kind"].astype(np.int64), records["close"].astype(bool)


def _segments_one_by_one(handle: int, n: int) -> tuple[list[float], list[int], list[int]]:
    """The n segments through pdfium's per-segment functions (four calls each): x and y interleaved
    (2n floats), types, close flags, as lists (three small arrays per grid line cost more than
    its four pdfium calls; `_polylines` makes one array of all of a page's short paths)."""
    get_segment, get_point, get_type, get_close = _segment_calls()
    xy = (ctypes.c_float * 2)()
    x_address = ctypes.addressof(xy)
    y_address = x_address + ctypes.sizeof(ctypes.c_float)
    # The loop keeps to local names and plain lists (numpy element writes cost more than the calls).
    coordinates, kinds, closing = [0.0] * (2 * n), [0] * n, [0] * n
    for i in range(n):
        segment = get_segment(handle, i)
        get_point(segment, x_address, y_address)
        coordinates[2 * i], coordinates[2 * i + 1] = xy[0], xy[1]
        kinds[i], closing[i] = get_type(segment), get_close(segment)
    return coordinates, kinds, closing


def _stroked_path(obj: Any, outer: np.ndarray | None, budget: list[int], scratch: _PathScratch) -> _StrokedPath | None:
    """A stroked path object's segments (fill-only shapes, such as text boxes, are skipped)."""
    calls, handle = _path_calls(), ctypes.cast(obj, ctypes.c_void_p).value
    if not calls.draw_mode(handle, scratch.fill_at, scratch.stroke_at) or not scratch.stroke.value:
        return None
    n = calls.count_segments(handle)
    if n <= 1:
        return None
    n = min(n, budget[0])
    budget[0] -= n
    xy, kinds, closes = _segments(handle, n)
    return _StrokedPath(xy=xy, kinds=kinds, closes=closes, matrix=_affine(obj, handle, outer, scratch),
                        colour=_colour(handle, scratch))


def _polylines(paths: list[_StrokedPath], transform: _DisplayTransform) -> list[Polyline]:
    """Every subpath of the page's stroked paths, in display mm, in drawing order.

    All points are carried to display mm in one array operation (a page has hundreds of short
    grid lines: one small matrix product each cost more than reading them)."""
    import pypdfium2.raw as pdfium_c

    if not paths:
        return []
    counts = np.array([len(path.kinds) for path in paths])
    owner = np.repeat(np.arange(len(paths)), counts)  # the path each point belongs to
    a, b, c, d, e, f = np.array([path.matrix for path in paths])[owner].T
    xy = _gathered([path.xy for path in paths], np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    points = transform.points(np.column_stack([x * a + y * c + e, x * b + y * d + f]))
    starts = _gathered([path.kinds for path in paths], np.int64) == pdfium_c.FPDF_SEGMENT_MOVETO
    starts[np.cumsum(counts) - counts] = True  # every path starts a subpath, moveto or not
    begin = np.flatnonzero(starts)
    end = np.append(begin[1:], len(starts))
    closed = np.logical_or.reduceat(_gathered([path.closes for path in paths], bool), begin)
    boxes = np.column_stack([np.minimum.reduceat(points, begin), np.maximum.reduceat(points, begin)])
    return [Polyline(points=points[start:stop], colour=paths[owner[start]].colour, closed=bool(shut),
                     bounds=tuple(box))
            for start, stop, shut, box in zip(begin.tolist(), end.tolist(), closed.tolist(), boxes.tolist(),
                                              strict=True)
            if stop - start >= 2]


def _gathered(parts: Sequence[np.ndarray | list[Any]], dtype: Any) -> np.ndarray:
    """The parts end to end as one flat array; each run of plain lists (short paths) becomes one array."""
    chunks: list[np.ndarray] = []
    run: list[Any] = []
    for part in parts:
        if isinstance(part, list):
            run.extend(part)
            continue
        if run:
            chunks.append(np.array(run, dtype=dtype))
            run = []
        chunks.append(np.asarray(part, dtype=dtype).ravel())
    if run:
        chunks.append(np.array(run, dtype=dtype))
    return np.concatenate(chunks)
