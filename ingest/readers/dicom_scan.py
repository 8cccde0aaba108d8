"""Count the data elements of a DICOM file before pydicom parses it.

pydicom keeps every data element of a file as a Python object. A 56 MB file of
seven million empty elements (8 bytes each on disk) made it take 2.4 GB and most of a
minute, so the number of elements, not the file size, bounds its memory. This walker
reads only element headers (tag, VR, length), skips values, goes into sequences and
their items, and stops at the first element past the limit:

    count_elements(data, start, explicit_vr=True, little_endian=True, cap=200_000)
        -> the number of elements (nested ones included), or None past `cap`

It is not a parser: it does not interpret a value, and a file it cannot walk (a length
running past the end, a damaged header) just ends the count there; pydicom then judges
the file. `dataset_start(data)` finds where the dataset begins and how it is encoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM_GROUP = 0xFFFE
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"


@dataclass(frozen=True)
class DatasetStart:
    offset: int  # where the first element after the file meta group begins
    explicit_vr: bool
    little_endian: bool
    transfer_syntax: str | None


def dataset_start(data: bytes) -> DatasetStart:
    """Where the dataset starts: after the preamble and the file meta group, when there are any.

    The file meta group is always explicit VR little endian; its transfer syntax tells how
    the rest is encoded. Without a file meta group (a bare dataset), implicit VR little
    endian is assumed, as pydicom does for most such files.
    """
    offset = 132 if data[128:132] == b"DICM" else 0
    syntax = None
    while offset + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            break
        vr = data[offset + 4:offset + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, offset + 8)[0]
            header = 12
        else:
            length = struct.unpack_from("<H", data, offset + 6)[0]
            header = 8
        if element == 0x0010:
            syntax = data[offset + header:offset + header + length].rstrip(b"\0 ").decode("ascii", "replace")
        offset += header + length
    if syntax is None:
        return DatasetStart(offset, explicit_vr=False, little_endian=True, transfer_syntax=None)
    return DatasetStart(offset, explicit_vr=syntax != _IMPLICIT_LE, little_endian=syntax != _EXPLICIT_BE,
                        transfer_syntax=syntax)


def _implicit_is_sequence(group: int, element: int) -> bool:
    """In implicit VR only the dictionary says that an element is a sequence."""
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR((group << 16) | element) == "SQ"
    except KeyError:  # private or unknown: pydicom keeps its value as bytes
        return False


def count_elements(data: bytes, start: int, *, explicit_vr: bool, little_endian: bool, cap: int) -> int | None:
    """Count element headers from `start` to the end of `data`; None as soon as there are more than `cap`."""
    endian = "<" if little_endian else ">"
    tag_format, short_length, long_length = f"{endian}HH", f"{endian}H", f"{endian}I"
    position, count, size = start, 0, len(data)
    while position + 8 <= size:
        group, element = struct.unpack_from(tag_format, data, position)
        if group == _ITEM_GROUP:  # item or delimiter: 8 bytes, then the item's elements follow
            position += 8
            continue
        count += 1
        if count > cap:
            return None
        if explicit_vr:
            vr = data[position + 4:position + 6]
            if vr in _LONG_VRS:
                if position + 12 > size:
                    break
                length = struct.unpack_from(long_length, data, position + 8)[0]
                position += 12
            else:
                length = struct.unpack_from(short_length, data, position + 6)[0]
                position += 8
            sequence = vr == b"SQ"
        else:
            length = struct.unpack_from(long_length, data, position + 4)[0]
            position += 8
            sequence = _implicit_is_sequence(group, element)
        if length == _UNDEFINED and explicit_vr and vr in (b"OB", b"OW"):
            position = _skip_fragments(data, position, tag_format, long_length)
            continue
        if sequence or length == _UNDEFINED:
            continue  # walk into the sequence: its items and their elements come next
        position += length
    return count


def _skip_fragments(data: bytes, position: int, tag_format: str, long_length: str) -> int:
    """Past encapsulated data (items of raw bytes up to a sequence delimiter): not elements."""
    while position + 8 <= len(data):
        group, element = struct.unpack_from(tag_format, data, position)
        length = struct.unpack_from(long_length, data, position + 4)[0]
        position += 8
        if group != _ITEM_GROUP or element == 0xE0DD:
            break
        position += length
    return position
