"""Philips XLI waveform compression (PageWriter / Sierra XML `compression="XLI"`), decoded.

Written from the format's description (as documented by the Sierra ECG Tools project):

    base64 text -> chunks, one per lead, each:
        8-byte header: int32 LE compressed size, int16 (unused), int16 LE start value
        LZW stream: 10-bit codes, most significant bit first; codes 0-255 are bytes, new
        strings take codes 256..1022; a code above 1022 ends the stream
    the decompressed bytes, padded to even length: first half the high bytes, second half
    the low bytes of int16 "deltas" d
    samples: x[0] = d[0], x[1] = d[1], and for i >= 2 the second difference
        x[i] = 2 x[i-1] - x[i-2] - e[i],  e[2] = start, e[i] = d[i-1] - 64

Every size is bounded before it is used (`max_bytes` per lead), so a corrupt or hostile
stream is refused instead of expanding without limit (LZW can expand ~700 fold).
"""

from __future__ import annotations

import numpy as np

_CODE_BITS = 10
_LAST_CODE = (1 << _CODE_BITS) - 2  # 1022; 1023 marks the end
_HEADER_BYTES = 8


class XliError(ValueError):
    """The XLI data is damaged or exceeds a limit; the message says which."""


def _codes(stream: bytes) -> np.ndarray:
    """The 10-bit codes of an LZW stream, most significant bit first (trailing bits ignored)."""
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8))
    count = bits.size // _CODE_BITS
    weights = 1 << np.arange(_CODE_BITS - 1, -1, -1)
    return bits[: count * _CODE_BITS].reshape(count, _CODE_BITS) @ weights


def lzw_decompress(stream: bytes, max_bytes: int) -> bytes:
    """Decompress one chunk's LZW stream; `XliError` past `max_bytes` or on an impossible code."""
    table: list[bytes] = [bytes([value]) for value in range(256)]
    output = bytearray()
    previous = b""
    for code in _codes(stream).tolist():
        if code > _LAST_CODE:
            break
        if code < len(table):
            entry = table[code]
        elif code == len(table) and previous:
            entry = previous + previous[:1]  # the string being defined by this very code
        else:
            raise XliError(f"LZW code {code} refers to no string yet ({len(table)} defined)")
        if previous and len(table) <= _LAST_CODE:
            table.append(previous + entry[:1])
        output += entry
        if len(output) > max_bytes:
            raise XliError(f"a lead decompresses to more than {max_bytes} bytes")
        previous = entry
    return bytes(output)


def _samples(decompressed: bytes, start: int) -> np.ndarray:
    """The int16 samples of one lead from its decompressed bytes and the header's start value."""
    if len(decompressed) % 2:
        decompressed += b"\x00"
    half = len(decompressed) // 2
    raw = np.frombuffer(decompressed, dtype=np.uint8).astype(np.int64)
    deltas = ((raw[:half] << 8) | raw[half:]).astype(np.uint16).astype(np.int16).astype(np.int64)
    if deltas.size < 3:
        return deltas
    e = np.empty(deltas.size, dtype=np.int64)
    e[2] = start
    e[3:] = deltas[2:-1] - 64
    # x[i] - x[i-1] = v[i];  v[1] = d[1] - d[0];  v[i] = v[i-1] - e[i] for i >= 2
    steps = np.empty(deltas.size, dtype=np.int64)
    steps[0] = deltas[0]
    steps[1] = deltas[1] - deltas[0]
    steps[2:] = steps[1] - np.cumsum(e[2:])
    samples = np.cumsum(steps)
    if samples.min() < -32768 or samples.max() > 32767:
        raise XliError("decoded samples leave the 16-bit range (damaged data)")
    return samples


def xli_decode(data: bytes, expected_leads: int, max_bytes_per_lead: int) -> list[np.ndarray]:
    """The int16 samples (as int64 arrays) of each lead in XLI-compressed `data`."""
    leads: list[np.ndarray] = []
    offset = 0
    while offset < len(data):
        if len(leads) >= expected_leads:
            break  # padding or trailing bytes after the last lead
        header = data[offset: offset + _HEADER_BYTES]
        if len(header) < _HEADER_BYTES:
            raise XliError(f"chunk {len(leads) + 1}: header cut short")
        size = int.from_bytes(header[0:4], "little", signed=True)
        start = int.from_bytes(header[6:8], "little", signed=True)
        offset += _HEADER_BYTES
        if size < 0 or offset + size > len(data):
            raise XliError(f"chunk {len(leads) + 1}: size {size} runs past the end of the data")
        leads.append(_samples(lzw_decompress(data[offset: offset + size], max_bytes_per_lead), start))
        offset += size
    if len(leads) != expected_leads:
        raise XliError(f"{len(leads)} compressed leads, {expected_leads} expected")
    return leads


def restore_limb_leads(leads: list[np.ndarray]) -> list[np.ndarray]:
    """Philips stores III, aVR, aVL and aVF (positions 3-6) as residuals against I and II.

        III = II - I - III',  aVR = -aVR' - floor((I + II) / 2),
        aVL = floor((I - III) / 2) - aVL',  aVF = floor((II + III) / 2) - aVF'
    """
    lead_i, lead_ii = leads[0], leads[1]
    lead_iii = lead_ii - lead_i - leads[2]
    avr = -leads[3] - (lead_i + lead_ii) // 2
    avl = (lead_i - lead_iii) // 2 - leads[4]
    avf = (lead_ii + lead_iii) // 2 - leads[5]
    return [lead_i, lead_ii, lead_iii, avr, avl, avf, *leads[6:]]
