"""Leakage files in other encodings than UTF-8, and messages that name the file's own line numbers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from persona_assets.runs.errors import InputError
from persona_assets.inputs.leakage import load_leakage
from persona_assets.inputs.text_files import read_csv_table

CSV = "source,target,rate\nvillain,comedian,0.25\ncomedian,villain,1\nvillain,librarian,0\n"
EXPECTED = pd.DataFrame(
    {
        "source": ["villain", "comedian", "villain"],
        "target": ["comedian", "villain", "librarian"],
        "rate": [0.25, 1.0, 0.0],
    }
)
READ = "read: UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_utf8_and_utf16_with_a_byte_order_mark_give_the_same_table(tmp_path, encoding, suffix):
    text = CSV if suffix == ".csv" else json.dumps(EXPECTED.to_dict("records"))
    if encoding.endswith("-bom"):  # a mark of one byte order written explicitly
        codec = encoding.removesuffix("-bom")
        data = ("\ufeff" + text).encode(codec)
        assert data[:2] == (b"\xff\xfe" if codec == "utf-16-le" else b"\xfe\xff")
    else:
        data = text.encode(encoding)
    path = tmp_path / f"leak{suffix}"
    path.write_bytes(data)
    pd.testing.assert_frame_equal(load_leakage(path), EXPECTED)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (CSV.encode("utf-16-le"), "looks like UTF-16 or UTF-32 without a byte-order mark"),
        (
            CSV.replace("villain", "méchant").encode("latin-1"),
            "looks like an 8-bit encoding such as Latin-1 or Windows-1252 (byte 0xe9 at line 2",
        ),
        (CSV.encode("utf-32"), "the text is UTF-32 (little-endian)"),
        (b"\xff\xfe" + b"s\x00\x00\xd8", "UTF-16 (little-endian) text with an invalid byte"),
    ],
)
def test_other_encodings_are_refused_naming_what_was_found_and_what_to_do(tmp_path, data, found):
    path = tmp_path / "leak.csv"
    path.write_bytes(data)
    with pytest.raises(InputError) as raised:
        load_leakage(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and found in message
    assert "save it as UTF-8 and re-run" in message and READ in message
    assert "codec can't decode" not in message


def test_a_bad_rate_is_named_by_the_line_of_the_file(tmp_path):
    # Line 1 header, 2-3 rows, 4 blank, 5-6 a row whose quoted category spans two lines, 7 the bad rate.
    text = (
        "source,target,rate,category\nvillain,comedian,0.1,a\ncomedian,villain,0.2,a\n\n"
        'villain,librarian,0.3,"two\nlines"\nlibrarian,villain,1.7,a\n'
    )
    path = tmp_path / "leak.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=r"leak\.csv: line 7 \(librarian -> villain\): rate 1\.7 outside \[0, 1\]"):
        load_leakage(path)
    assert text.splitlines()[6].startswith("librarian,villain,1.7")  # line 7 as an editor numbers it


def test_a_blank_name_is_named_by_its_line(tmp_path):
    path = tmp_path / "leak.csv"
    path.write_text("source,target,rate\nvillain,comedian,0.1\n,comedian,0.2\n")
    with pytest.raises(InputError, match=r"line 3: source must be a non-empty persona name, got ''"):
        load_leakage(path)


def test_csv_structure_errors_name_the_line(tmp_path):
    path = tmp_path / "leak.csv"
    path.write_text("source,target,rate\nvillain,comedian,0.1\nvillain,librarian,0.2,extra,more\n")
    with pytest.raises(InputError, match=r"line 3 has 5 fields, the header \(line 1\) has 3"):
        read_csv_table(path)
    path.write_text("source,rate,rate\nvillain,0.1,0.2\n")
    with pytest.raises(InputError, match=r"column\(s\) 'rate' appear more than once"):
        read_csv_table(path)
    path.write_text('source,target,rate\nvillain,"comedian,0.1\n')
    with pytest.raises(InputError, match=r"not a readable CSV table \(line 2: unexpected end of data\)"):
        read_csv_table(path)


def test_a_huge_value_is_quoted_cut(tmp_path):
    path = tmp_path / "leak.csv"
    path.write_text(f"source,target,rate\nvillain,comedian,{'9x' * 50_000}\n")
    with pytest.raises(InputError) as raised:
        load_leakage(path)
    assert "(100000 characters in all)" in str(raised.value) and len(str(raised.value)) < 600
