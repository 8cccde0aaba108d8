"""The hostile-input corpus, generated at test time (nothing binary is committed).

    corpus = build_corpus(tmp / "inbox", tmp / "outside", scale="test")
    for item in corpus.items: ...     # HostileItem: name, what it is, its top-level entries, what must happen

Each item is one thing a hospital night (or an attacker with write access to an inbox)
can put in an inbox: small files that declare huge signals, deflate bombs, PDFs with tall
or countless pages, DICOMs with millions of elements, headers that name files elsewhere,
symbolic links out of the inbox, FIFOs, sockets, names that are hidden, too long or not
UTF-8, and demographics that would break an HL7 message. Every item sits in a folder of
its own under the inbox (so WFDB records and sidecars of different items never meet), and
`outside/` holds the files that must never be read: a secret, a valid DICOM, a signal file.

`expect` says what the watcher must do with the item: "quarantined" (copied with a
`.reason` that contains `reason`), "reported" (logged once, left alone), or "study" (an
awkward but valid ECG: it must become a study like any other, not loop in the inbox). Sizes:
scale="test" keeps the files the watcher copies small (the limits still trip at their
defaults); scale="full" is what the issue measured (a 200 MB signal file, 1 GiB bombs).
Sparse files make large signal files cost no disk space until someone copies them.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
MiB = 1024 * 1024
SECRET = b"ECGWL-HOSTILE-SENTINEL: this file lies outside the inbox and must never be read\n"

Scale = Literal["test", "full"]


@dataclass
class HostileItem:
    name: str
    description: str
    expect: Literal["quarantined", "reported", "study"]
    reason: str  # a piece of the reason the quarantine's .reason file (or the report) must contain
    entries: list[Path] = field(default_factory=list)  # what was put in the inbox for it


@dataclass
class Corpus:
    inbox: Path
    outside: Path
    items: list[HostileItem]
    outside_files: list[Path]  # files that must never be read, copied or registered


# ---------------------------------------------------------------- raw file writers


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def sparse_file(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of `size` bytes that takes no disk space beyond `head` (a hole after it)."""
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def deflate_zeros(size: int, *, raw: bool = False, byte: bytes = b"\0") -> bytes:
    """`size` bytes of `byte`, deflated (zlib stream, or raw deflate for DICOM); ~1000:1."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15 if raw else 15)
    block = byte * MiB
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    parts.append(compressor.compress(byte * (size % MiB)))
    parts.append(compressor.flush())
    return b"".join(parts)


def raw_pdf(path: Path, pages: list[tuple[float, float]], *, content: bytes = b"", content_filter: bool = False,
            image: tuple[int, int] | None = None) -> Path:
    """A minimal, valid PDF written byte by byte: `pages` (width, height) in points sharing one
    content stream (`content`, already deflated when `content_filter`), and optionally one
    image XObject declaring `image` = (width, height) pixels."""
    objects: list[bytes] = []
    n_pages = len(pages)
    first_page = 3
    content_id = first_page + n_pages
    image_id = content_id + 1
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = b" ".join(f"{first_page + i} 0 R".encode() for i in range(n_pages))
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(n_pages).encode() + b" >>")
    resources = f"/Resources << /XObject << /Im1 {image_id} 0 R >> >>".encode() if image else b""
    for width, height in pages:
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width:g} {height:g}] "
                       f"/Contents {content_id} 0 R ".encode() + resources + b" >>")
    flate = b" /Filter /FlateDecode" if content_filter else b""
    objects.append(b"<< /Length " + str(len(content)).encode() + flate + b" >>\nstream\n" + content
                   + b"\nendstream")
    if image:
        data = zlib.compress(b"\0" * 4096)
        objects.append(f"<< /Type /XObject /Subtype /Image /Width {image[0]} /Height {image[1]} "
                       f"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length {len(data)} >>\n"
                       "stream\n".encode() + data + b"\nendstream")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def _explicit_element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def dicom_file(path: Path, dataset_bytes: bytes, *, transfer_syntax: str = "1.2.840.10008.1.2.1") -> Path:
    """Preamble, DICM, a file meta group (12-lead ECG SOP class) and the given dataset bytes."""
    def text(value: str) -> bytes:
        raw = value.encode()
        return raw + b"\0" if len(raw) % 2 else raw

    meta = b"".join([
        _explicit_element(0x0002, 0x0001, b"OB", b"\0\1"),
        _explicit_element(0x0002, 0x0002, b"UI", text("1.2.840.10008.5.1.4.1.1.9.1.1")),
        _explicit_element(0x0002, 0x0003, b"UI", text("1.2.826.0.1.3680043.8.498.1")),
        _explicit_element(0x0002, 0x0010, b"UI", text(transfer_syntax)),
    ])
    group_length = _explicit_element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta)))
    path.write_bytes(b"\0" * 128 + b"DICM" + group_length + meta + dataset_bytes)
    return path


_SOP_CLASS = _explicit_element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.9.1.1\0")


def dicom_many_elements(path: Path, count: int) -> Path:
    """A DICOM of `count` empty private elements (8 bytes each on disk, ~300 bytes in pydicom)."""
    body = bytearray(_SOP_CLASS)
    group, element = 0x0009, 0x1000
    for _ in range(count):
        body += struct.pack("<HH2sH", group, element, b"LO", 0)
        element += 1
        if element == 0xFFFF:
            group, element = group + 2, 0x1000
    return dicom_file(path, bytes(body))


def dicom_deflate_bomb(path: Path, inflated: int) -> Path:
    """A deflated-transfer-syntax DICOM whose dataset inflates to `inflated` bytes."""
    header = _SOP_CLASS + struct.pack("<HH2sHI", 0x0009, 0x1001, b"OB", 0, inflated - len(_SOP_CLASS) - 12)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [compressor.compress(header)]
    remaining = inflated - len(header)
    block = b"\0" * MiB
    while remaining > 0:
        parts.append(compressor.compress(block[:min(remaining, MiB)]))
        remaining -= MiB
    parts.append(compressor.flush())
    return dicom_file(path, b"".join(parts), transfer_syntax="1.2.840.10008.1.2.1.99")


def pydicom_ecg(path: Path, **overrides: object) -> Path:
    """The bundled sample DICOM ECG, with some attributes changed (pydicom writes it)."""
    import pydicom

    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    for keyword, value in overrides.items():
        if keyword.startswith("group_"):  # group_NumberOfWaveformSamples=...: on the first waveform group
            setattr(dataset.WaveformSequence[0], keyword.removeprefix("group_"), value)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path)
    return path


def wfdb_header(path: Path, record: str, *, fs: str = "500", nsamp: str = "5000", nsig: int = 12,
                signal_file: str | None = None, fmt: str = "16") -> Path:
    """A WFDB header of `nsig` leads stored in one signal file (default `<record>.dat`)."""
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    lines = [f"{record} {nsig} {fs} {nsamp}".rstrip()]
    for index in range(nsig):
        lead = leads[index] if index < len(leads) else f"X{index}"
        lines.append(f"{signal_file or record + '.dat'} {fmt} 1000/mV 16 0 0 0 0 {lead}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- inputs at the limits


def build_limit_cases(inbox: Path) -> list[HostileItem]:
    """Valid ECGs as large as the default limits let through: the worst memory a study may cost.

    A 12-lead WFDB record of 600,000 samples per lead (10 minutes at 1 kHz), the sample DICOM
    stretched to 600,000 samples per lead, and a PDF of 7 long pages (77.5 of the 80 megapixels).
    Each must become a study (the signals are the samples repeated; the PDF's pages are blank).
    """
    import pydicom

    items = []
    folder = inbox / "limit-wfdb-10min-1kHz"
    folder.mkdir(parents=True)
    repeats = 600_000 // 5000
    header = (SAMPLES / "demo-wfdb.hea").read_text().splitlines()
    header[0] = "long 12 1000 600000"
    (folder / "long.hea").write_text("\n".join(line.replace("demo-wfdb.dat", "long.dat") for line in header) + "\n")
    (folder / "long.dat").write_bytes((SAMPLES / "demo-wfdb.dat").read_bytes() * repeats)
    items.append(HostileItem(folder.name, "WFDB 12 x 600,000 samples (10 min at 1 kHz)", "study", ""))

    folder = inbox / "limit-dicom-10min-1kHz"
    folder.mkdir()
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    rhythm = dataset.WaveformSequence[0]
    rhythm.WaveformData = bytes(rhythm.WaveformData) * 60  # 10,000 -> 600,000 samples per lead
    rhythm.NumberOfWaveformSamples = 600_000
    dataset.save_as(folder / "long.dcm")
    items.append(HostileItem(folder.name, "DICOM 12 x 600,000 samples (10 min at 1 kHz)", "study", ""))

    folder = inbox / "limit-pdf-77-megapixels"
    folder.mkdir()
    raw_pdf(folder / "long.pdf", [(612, 1400)] * 7)
    items.append(HostileItem(folder.name, "PDF of 7 pages of 11 megapixels each (77.5 M of 80 M)", "study", ""))
    return items


# ---------------------------------------------------------------- the corpus


def build_corpus(inbox: Path, outside: Path, *, scale: Scale = "test") -> Corpus:
    """Write every hostile item under `inbox` (one folder each) and the bait under `outside`."""
    inbox.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    secret = outside / "passwd"
    secret.write_bytes(SECRET)
    outside_dicom = shutil.copyfile(SAMPLES / "demo-dicom.dcm", outside / "outside.dcm")
    # The bytes of a DICOM must be unique to it, so that a copy anywhere can be recognised.
    Path(outside_dicom).write_bytes(Path(outside_dicom).read_bytes() + SECRET)
    elsewhere = outside / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    outside_dat = elsewhere / "x.dat"
    outside_dat.write_bytes(SECRET * (120000 // len(SECRET) + 1))
    outside_folder = outside / "folder"
    outside_folder.mkdir(exist_ok=True)
    shutil.copyfile(outside_dicom, outside_folder / "inside-a-linked-folder.dcm")

    big = scale == "full"
    items: list[HostileItem] = []

    def item(name: str, description: str, reason: str, build: Callable[[Path], list[Path] | None],
             expect: Literal["quarantined", "reported", "study"] = "quarantined") -> None:
        folder = inbox / name
        folder.mkdir()
        made = build(folder)
        items.append(HostileItem(name, description, expect, reason, made or sorted(folder.iterdir())))

    # --- WFDB: sizes declared or implied -------------------------------------------------
    def no_nsamp(folder: Path) -> None:
        wfdb_header(folder / "big.hea", "big", nsamp="")
        size = 200 * MiB if big else 12 * 2 * 700_000  # 700,000 samples per lead > 600,000
        sparse_file(folder / "big.dat", size)

    item("wfdb-no-sample-count-huge-dat", "WFDB header without a sample count over a large sparse .dat",
         "max_samples_per_lead", no_nsamp)

    def declared_huge(folder: Path) -> None:
        wfdb_header(folder / "decl.hea", "decl", nsamp="900000000")
        sparse_file(folder / "decl.dat", 12 * 2 * 5000)

    item("wfdb-declares-900M-samples", "WFDB header declaring 900 million samples over a small .dat",
         "truncated", declared_huge)

    def slow_rate(folder: Path) -> None:
        wfdb_header(folder / "slow.hea", "slow", fs="0.001")
        shutil.copyfile(SAMPLES / "demo-wfdb.dat", folder / "slow.dat")

    item("wfdb-fs-0.001", "WFDB record at 0.001 Hz (resampling to 500 Hz would multiply it 500,000-fold)",
         "min_sampling_rate_hz", slow_rate)

    def fast_rate(folder: Path) -> None:
        wfdb_header(folder / "fast.hea", "fast", fs="10000000")
        shutil.copyfile(SAMPLES / "demo-wfdb.dat", folder / "fast.dat")

    item("wfdb-fs-10MHz", "WFDB record at 10 MHz", "max_sampling_rate_hz", fast_rate)

    def many_signals(folder: Path) -> None:
        wfdb_header(folder / "wide.hea", "wide", nsig=5000, nsamp="10")
        sparse_file(folder / "wide.dat", 5000 * 10 * 2)

    item("wfdb-5000-signals", "WFDB header of 5000 signals", "max_channels", many_signals)

    def flac_no_nsamp(folder: Path) -> None:
        wfdb_header(folder / "flac.hea", "flac", nsamp="", fmt="516")
        sparse_file(folder / "flac.dat", 4096)

    item("wfdb-compressed-no-sample-count", "WFDB FLAC-format header without a sample count",
         "cannot be bounded", flac_no_nsamp)

    def traversal(folder: Path) -> None:
        wfdb_header(folder / "trav.hea", "trav", signal_file="../../outside/elsewhere/x.dat")

    item("wfdb-traversal-header", "WFDB header naming ../../outside/elsewhere/x.dat",
         "outside its own folder", traversal)

    def absolute(folder: Path) -> None:
        wfdb_header(folder / "abs.hea", "abs", signal_file=str(outside_dat))

    item("wfdb-absolute-signal-path", "WFDB header naming an absolute path outside the inbox",
         "outside its own folder", absolute)

    def linked_dat(folder: Path) -> None:
        wfdb_header(folder / "lnk.hea", "lnk")
        (folder / "lnk.dat").symlink_to(outside_dat)

    item("wfdb-signal-file-is-symlink", "WFDB header whose .dat is a symbolic link out of the inbox",
         "symbolic link", linked_dat)

    def fifo_dat(folder: Path) -> None:
        wfdb_header(folder / "pipe.hea", "pipe")
        os.mkfifo(folder / "pipe.dat")

    item("wfdb-signal-file-is-fifo", "WFDB header whose .dat is a FIFO", "FIFO", fifo_dat)

    def huge_header(folder: Path) -> None:
        (folder / "huge.hea").write_text("huge 12 500 5000\n" + "# comment\n" * 40_000)

    item("wfdb-huge-header", "a 400 KB .hea of comments", "unrecognised", huge_header)

    # --- PDF ------------------------------------------------------------------------------
    item("pdf-tall-pages", "PDF of 20 pages 612 x 14,400 pt (about 0.5 GB each if rendered)", "max_page_pixels",
         lambda f: [raw_pdf(f / "tall.pdf", [(612, 14400)] * 20)])
    item("pdf-500-pages", "PDF of 500 blank pages", "max_pdf_pages",
         lambda f: [raw_pdf(f / "pages.pdf", [(792, 612)] * 500)])
    item("pdf-total-pixels", "PDF of 8 long pages, each under the page limit, together over the total",
         "max_total_page_pixels", lambda f: [raw_pdf(f / "long.pdf", [(612, 1400)] * 8)])
    bomb = (1024 if big else 130) * MiB  # the limit is 128 MiB
    item("pdf-deflate-bomb", f"PDF whose content stream inflates to {bomb // MiB} MiB", "max_decompressed_bytes",
         lambda f: [raw_pdf(f / "bomb.pdf", [(792, 612)], content=deflate_zeros(bomb, byte=b" "),
                            content_filter=True)])
    item("pdf-image-bomb", "PDF with a 100,000 x 100,000 px image", "max_image_pixels",
         lambda f: [raw_pdf(f / "image.pdf", [(792, 612)], content=b"q 792 0 0 612 0 0 cm /Im1 Do Q",
                            image=(100_000, 100_000))])
    item("pdf-damaged", "a PDF header and nothing else", "unreadable PDF",
         lambda f: [write(f / "damaged.pdf", b"%PDF-1.7\n" + b"\0" * 64)])

    # --- DICOM ----------------------------------------------------------------------------
    item("dicom-declares-2G-samples", "DICOM waveform declaring 2,000,000,000 samples", "max_samples_per_lead",
         lambda f: [pydicom_ecg(f / "declared.dcm", group_NumberOfWaveformSamples=2_000_000_000)])
    item("dicom-deflate-bomb", f"deflated DICOM inflating to {bomb // MiB} MiB", "max_decompressed_bytes",
         lambda f: [dicom_deflate_bomb(f / "bomb.dcm", bomb)])
    item("dicom-many-elements", "DICOM of 3,000,000 empty elements (24 MB; pydicom would take ~1 GB)",
         "max_dicom_elements", lambda f: [dicom_many_elements(f / "many.dcm", 3_000_000 if big else 300_000)])
    huge = (256 if big else 65) * MiB  # the limit is 64 MiB
    item("dicom-huge-file", f"a {huge // MiB} MiB (sparse) file that starts like a DICOM", "max_file_bytes",
         lambda f: [sparse_file(f / "huge.dcm", huge, head=b"\0" * 128 + b"DICM")])
    item("dicom-fs-zero", "DICOM waveform with sampling frequency 0", "no usable sampling frequency",
         lambda f: [pydicom_ecg(f / "fs0.dcm", group_SamplingFrequency="0")])
    item("dicom-two-patient-ids", "DICOM whose PatientID has two values (123\\456)", "PatientID has 2 values",
         lambda f: [pydicom_ecg(f / "twoids.dcm", PatientID="123\\456")])
    item("dicom-accession-crlf", "DICOM whose accession number holds CR LF and an MSH segment",
         "accession contains a line break",
         lambda f: [pydicom_ecg(f / "crlf.dcm", AccessionNumber="A1\r\nMSH|^~&|EVIL")])
    item("dicom-truncated", "the first 4 KB of a DICOM ECG", "DICOM",
         lambda f: [write(f / "cut.dcm", (SAMPLES / "demo-dicom.dcm").read_bytes()[:4096])])

    def delimiter_pdf(folder: Path) -> None:
        shutil.copyfile(SAMPLES / "demo-scan.pdf", folder / "scan.pdf")
        (folder / "scan.pdf.json").write_text('{"patient_id": "12|34^^^^MR"}')

    item("sidecar-delimiters-in-patient-id", "a scanned PDF whose sidecar gives the patient id 12|34^^^^MR",
         "HL7 delimiter", delimiter_pdf)

    # --- anything else --------------------------------------------------------------------
    item("empty-file", "a 0-byte file", "unrecognised", lambda f: [write(f / "empty.dcm", b"")])
    item("junk", "random bytes", "unrecognised", lambda f: [write(f / "junk.bin", os.urandom(4096))])

    # --- the inbox boundary ---------------------------------------------------------------
    def link(target: Path | str, name: str) -> Callable[[Path], None]:
        return lambda folder: (folder / name).symlink_to(target)

    item("symlink-to-secret", "symbolic link to a file outside the inbox (like /etc/passwd)", "symbolic link",
         link(secret, "passwd.dcm"))
    item("symlink-to-outside-dicom", "symbolic link to a valid DICOM ECG outside the inbox", "symbolic link",
         link(outside_dicom, "ecg.dcm"))
    item("symlink-dangling", "symbolic link to nothing", "symbolic link", link(outside / "no-such-file", "gone.dcm"))
    item("symlink-to-dev-zero", "symbolic link to /dev/zero", "symbolic link", link("/dev/zero", "zero.dcm"))
    item("symlink-loop", "symbolic link to itself", "symbolic link", link("loop.dcm", "loop.dcm"))
    item("symlink-to-outside-folder", "symbolic link to a folder of ECGs outside the inbox", "symbolic link",
         link(outside_folder, "linked-folder"))
    item("fifo", "a named pipe (opening it would block)", "FIFO", lambda f: os.mkfifo(f / "pipe.dcm"))

    def unix_socket(folder: Path) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(folder / "ecg.sock"))
        server.close()  # the socket file stays

    item("socket", "a Unix socket file", "socket", unix_socket)
    item("dot-dot-name", "a DICOM named ..ecg.dcm (hidden, never renamed)", "hidden",
         lambda f: [shutil.copyfile(SAMPLES / "demo-dicom.dcm", f / "..ecg.dcm")])
    item("part-file-never-renamed", "ecg.dcm.part whose sender never renamed it", "temporary",
         lambda f: [shutil.copyfile(SAMPLES / "demo-dicom.dcm", f / "ecg.dcm.part")])

    def bad_name(folder: Path) -> None:
        target = os.path.join(os.fsencode(folder), b"ecg-\xff\xfe.dcm")
        shutil.copyfile(SAMPLES / "demo-dicom.dcm", target)

    item("name-not-utf8", "a DICOM whose file name is not valid UTF-8", "not valid UTF-8", bad_name)

    def long_name(folder: Path) -> None:
        # A comment after %%EOF makes the content its own (another item uses the same sample).
        write(folder / ("L" * 250 + ".pdf"), (SAMPLES / "demo-scan.pdf").read_bytes() + b"%long name\n")

    item("name-254-chars", "a valid scanned PDF with a 254-character name (no room for suffixes)", "",
         long_name, expect="study")

    def hidden_folder(folder: Path) -> list[Path]:
        (folder / ".hidden").mkdir()
        shutil.copyfile(SAMPLES / "demo-dicom.dcm", folder / ".hidden" / "x.dcm")
        return [folder / ".hidden"]

    item("hidden-folder", "a hidden folder with a DICOM inside", "hidden folder", hidden_folder, expect="reported")

    return Corpus(inbox, outside, items, [secret, Path(outside_dicom), outside_dat,
                                          outside_folder / "inside-a-linked-folder.dcm"])
