"""Reading other people's text files: the encoding decided from the bytes, CSV records with their line numbers.

Spreadsheets and Windows tools save "Unicode" text as UTF-16 with a byte-order mark, and Excel
writes UTF-8 with one; both are read. Text in another encoding is refused naming the encoding it
appears to be and what to do, never with a bare codec error.

No dagster import.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

from persona_assets.runs.errors import InputError

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, None, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, None, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with a byte-order mark"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 (big-endian)"),
)
READ_ENCODINGS = "UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark"


def _undecodable(path: Path, raw: bytes, encoding: str, error: UnicodeDecodeError) -> InputError:
    line = raw[: error.start].decode(error.encoding, errors="replace").count("\n") + 1
    byte = raw[error.start]
    if encoding != "utf-8":
        found = f"{encoding} text with an invalid byte 0x{byte:02x} at line {line}"
    elif b"\x00" in raw[:4096]:
        found = "UTF-16 or UTF-32 without a byte-order mark, by its zero bytes"
    else:
        found = f"an 8-bit encoding such as Latin-1 or Windows-1252 (byte 0x{byte:02x} at line {line} is not UTF-8)"
    return InputError(f"{path}: the text looks like {found}; save it as UTF-8 and re-run (read: {READ_ENCODINGS})")


def decode_text_file(path: Path) -> str:
    """The text of `path`, decoded as UTF-8, UTF-8 with a BOM, or UTF-16 with a BOM (the mark removed);
    InputError naming the encoding found and what to do otherwise."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    encoding, label = "utf-8", "UTF-8"
    for mark, codec, name in BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            if codec is None:
                raise InputError(f"{path}: the text is {name}; save it as UTF-8 and re-run (read: {READ_ENCODINGS})")
            encoding, label = codec, name
            break
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(path, raw, label if encoding != "utf-8" else "utf-8", exc) from None
    if encoding == "utf-8" and "\x00" in text:
        # ASCII saved as UTF-16 without a mark is valid UTF-8 with a zero byte after every character.
        raise InputError(
            f"{path}: the text looks like UTF-16 or UTF-32 without a byte-order mark, by its zero bytes; "
            f"save it as UTF-8 and re-run (read: {READ_ENCODINGS})"
        )
    return text


@dataclass(frozen=True)
class CsvTable:
    header: list[str]  # column names, surrounding whitespace removed
    rows: list[dict[str, str]]
    lines: list[int]  # the file line on which each row starts (1 = the header)


def read_csv_table(path: Path) -> CsvTable:
    """A CSV file with a header line, every value a string; blank lines skipped. InputError naming the
    file and line for an unterminated quote, a row with more fields than the header, or a repeated column."""
    text = decode_text_file(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for record in reader:
            if any(field.strip() for field in record):
                # line_num is the last line read; a quoted field may span several lines.
                records.append((reader.line_num - sum(field.count("\n") for field in record), record))
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV table (line {reader.line_num}: {exc})") from exc
    if not records:
        raise InputError(f"{path}: not a readable CSV table (no header line)")
    header_line, header = records[0]
    names = [name.strip() for name in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{path}: column(s) {', '.join(map(repr, repeated))} appear more than once in the header")
    rows, lines = [], []
    for line, record in records[1:]:
        if len(record) > len(names):
            raise InputError(
                f"{path}: line {line} has {len(record)} fields, the header (line {header_line}) has {len(names)}"
            )
        rows.append({name: record[i] if i < len(record) else "" for i, name in enumerate(names)})
        lines.append(line)
    return CsvTable(header=names, rows=rows, lines=lines)
