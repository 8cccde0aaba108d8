"""A look at a PDF's raw streams before pdfium opens it: inflated sizes and image sizes.

pdfium inflates a content or image stream whole when it draws a page, so a few kilobytes of
deflate that expand to gigabytes (a "deflate bomb") would be expanded in memory before any
check of ours could run. This module walks the file's bytes instead, finds every stream
(`<< dict >> stream ... endstream`), and

- counts what each FlateDecode stream inflates to (in 1 MiB steps, keeping nothing), against
  `InputLimits.max_decompressed_bytes` for the whole file;
- reads the /Width and /Height of every image stream, against `max_image_pixels`.

    check_pdf_streams(path, limits)     raises LimitExceeded naming the stream's object

It is a byte scan, not a PDF parser: streams inside an encrypted PDF cannot be inflated
here (they are skipped: pdfium refuses those needing a password anyway), and other filters
(LZW, RunLength) are not counted. Page sizes are checked by the reader itself, from pdfium's
page box, before it renders a page.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from ingest.readers.limits import InputLimits, LimitExceeded, check_file_size, check_image_pixels, inflated_size

_STREAM = re.compile(rb"stream(?:\r\n|\n|\r)")
_OBJECT = re.compile(rb"(\d+)\s+(\d+)\s+obj\b")
_FILTER = re.compile(rb"/Filter\s*(\[[^\]]*\]|/[A-Za-z0-9]+)")
_DICT_LOOKBACK = 8192  # a stream's dictionary is within this many bytes before `stream`


def _int_entry(dictionary: bytes, key: bytes) -> int | None:
    match = re.search(rb"/" + key + rb"\s+(\d+)(?!\s+\d+\s+R)", dictionary)
    return int(match[1]) if match else None


def check_pdf_streams(path: Path, limits: InputLimits) -> None:
    """Refuse a PDF whose streams inflate past the limit or hold an image past the pixel limit."""
    check_file_size(path, limits, what="PDF")
    data = path.read_bytes()
    remaining = limits.max_decompressed_bytes
    position = 0
    while (match := _STREAM.search(data, position)) is not None:
        start = position = match.end()
        head = data[max(0, match.start() - _DICT_LOOKBACK):match.start()].rstrip()
        if not head.endswith(b">>"):  # "endstream", or the word inside other text: not a stream's start
            continue
        end = data.find(b"endstream", start)
        if end < 0:
            end = len(data)
        position = end
        objects = list(_OBJECT.finditer(head))
        dictionary = head[objects[-1].end():] if objects else head
        name = f"object {objects[-1][1].decode()}" if objects else "a stream"
        if re.search(rb"/Subtype\s*/Image\b", dictionary):
            width, height = _int_entry(dictionary, b"Width"), _int_entry(dictionary, b"Height")
            if width is not None and height is not None:
                check_image_pixels(path, width, height, limits, what=f"image in PDF {name}")
        filters = _FILTER.search(dictionary)
        if filters is None or not filters[1].lstrip(b"[ \r\n").startswith(b"/FlateDecode"):
            continue
        try:
            size = inflated_size(data[start:end], cap=remaining)
        except zlib.error:
            continue  # encrypted or damaged: pdfium judges it
        if size is None:
            raise LimitExceeded(path, f"PDF {name}: its streams inflate to more than "
                                      f"{limits.max_decompressed_bytes // (1024 * 1024)} MiB in all",
                                limit=f"max_decompressed_bytes={limits.max_decompressed_bytes}")
        remaining -= size
