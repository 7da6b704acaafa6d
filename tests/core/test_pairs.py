"""Tests for pair identity and user pair files (trans_encoder_core.pairs)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trans_encoder_core.errors import ConfigError, InputDataError
from trans_encoder_core.pair_files import read_pairs
from trans_encoder_core.pairs import make_pairs_table, normalise_text, pair_id, pair_ids
from trans_encoder_core.schema import PAIRS_SCHEMA

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
ROWS = [
    ("A man plays a guitar.", "A man is playing guitar."),
    ('He said "hi, there" twice', 'Unbalanced " quote'),
    ("Le café est fermé.", "The café is closed."),
]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _write_all_formats(folder: Path, rows: list[tuple[str, str]]) -> dict[str, Path]:
    csv_lines = ["sentence1,sentence2"] + [
        ",".join('"' + cell.replace('"', '""') + '"' for cell in row) for row in rows
    ]
    paths = {
        "csv": _write(folder / "p.csv", "\n".join(csv_lines) + "\n"),
        "tsv": _write(folder / "p.tsv", "sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in rows)),
        "jsonl": _write(
            folder / "p.jsonl", "".join(json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in rows)
        ),
        "parquet": folder / "p.parquet",
    }
    pq.write_table(
        pa.table({"sentence1": [a for a, _ in rows], "sentence2": [b for _, b in rows]}), paths["parquet"]
    )
    return paths


# --- identity ---------------------------------------------------------------------------------


def test_normalise_text_strips_only_surrounding_whitespace() -> None:
    assert normalise_text("  A  b\tc \n") == "A  b\tc"


def test_pair_id_is_stable_and_documented() -> None:
    expected = hashlib.sha256(b"a cat\x1fa dog").hexdigest()[:16]
    assert pair_id("a cat", "a dog") == expected == "e229a56d1a52d7d5"  # frozen: ids are stored in tables
    assert pair_id(" a cat\n", "a dog  ") == expected  # normalised
    assert len(expected) == 16 and int(expected, 16) >= 0


def test_pair_id_is_order_sensitive_and_avoids_concat_collisions() -> None:
    assert pair_id("a", "b") != pair_id("b", "a")
    assert pair_id("ab", "c") != pair_id("a", "bc")
    assert pair_id("A cat", "x") != pair_id("a cat", "x")  # case is kept


def test_pair_ids_vectorised_and_length_check() -> None:
    assert pair_ids(["a", "b"], ["c", "d"]) == [pair_id("a", "c"), pair_id("b", "d")]
    with pytest.raises(InputDataError, match=r"equal length, got 2 and 1"):
        pair_ids(["a", "b"], ["c"])


def test_make_pairs_table_dedups_keeping_first() -> None:
    table, n_dup = make_pairs_table(["a", " a ", "b", "c", "a"], ["x", "x", "y", "z", "y"])
    assert n_dup == 1
    assert table.schema.equals(PAIRS_SCHEMA)
    assert table.column("sentence1").to_pylist() == ["a", "b", "c", "a"]
    assert table.column("pair_id").to_pylist()[0] == pair_id("a", "x")


def test_make_pairs_table_rejects_blank_in_memory() -> None:
    with pytest.raises(InputDataError, match=r"column 'sentence2' of <in-memory>, got an empty .* at row 1"):
        make_pairs_table(["a", "b"], ["x", " "])
    with pytest.raises(InputDataError, match=r"equal length"):
        make_pairs_table(["a"], [])


# --- formats ----------------------------------------------------------------------------------


def test_every_format_round_trips_to_the_same_table(tmp_path: Path) -> None:
    results = {fmt: read_pairs(path) for fmt, path in _write_all_formats(tmp_path, ROWS).items()}
    tables = [result.table for result in results.values()]
    assert all(table.equals(tables[0]) for table in tables)
    assert tables[0].column("sentence2").to_pylist()[1] == 'Unbalanced " quote'
    assert tables[0].column("sentence1").to_pylist()[1] == 'He said "hi, there" twice'
    assert {(r.n_rows, r.n_duplicates, r.n_dropped) for r in results.values()} == {(3, 0, 0)}


def test_examples_are_in_sync() -> None:
    tables = [read_pairs(EXAMPLES / f"pairs.{ext}").table for ext in ("csv", "tsv", "jsonl", "parquet")]
    assert tables[0].num_rows >= 30
    assert all(table.equals(tables[0]) for table in tables)


def test_file_object_with_uri_name(tmp_path: Path) -> None:
    data = _write_all_formats(tmp_path, ROWS)["parquet"].read_bytes()
    result = read_pairs(io.BytesIO(data), name="s3://bucket/pairs.parquet")
    assert result.n_pairs == 3 and result.source == "s3://bucket/pairs.parquet"
    stream = io.BytesIO(b"sentence1\tsentence2\na\tb\n")
    assert read_pairs(stream, format="tsv").source == "<stream>"


def test_text_stream_and_unknown_extension_are_rejected() -> None:
    with pytest.raises(InputDataError, match=r"binary file object .* open it 'rb'"):
        read_pairs(io.StringIO("x"), name="p.csv")  # type: ignore[arg-type]
    with pytest.raises(
        InputDataError, match=r"ending in one of .* got 'pairs.xlsx'; rename the file or pass format="
    ):
        read_pairs(io.BytesIO(b"x"), name="pairs.xlsx")
    with pytest.raises(ConfigError, match=r"format in .* got 'xml'"):
        read_pairs(io.BytesIO(b"x"), name="p.csv", format="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"two different sentence columns"):
        read_pairs(io.BytesIO(b"x"), name="p.csv", sentence1_column="a", sentence2_column="a")


def test_duplicates_are_counted_not_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.tsv", "sentence1\tsentence2\na\tb\n a \tb\nb\ta\na\tb\n")
    result = read_pairs(path)
    assert (result.n_rows, result.n_duplicates, result.n_pairs) == (4, 2, 2)


def test_custom_columns_crlf_bom_and_long_sentences(tmp_path: Path) -> None:
    long = "word " * 60000  # 300k characters, above the csv module's default field limit
    text = '\ufeffid,left,right\r\n1,short,"' + long + '"\r\n'
    result = read_pairs(_write(tmp_path / "c.csv", text), sentence1_column="left", sentence2_column="right")
    assert result.table.column("sentence2").to_pylist() == [long.strip()]
    tsv = read_pairs(
        _write(tmp_path / "c.tsv", "left\tright\r\nx\t" + long + "\r\n"),
        sentence1_column="left",
        sentence2_column="right",
    )
    assert len(tsv.table.column("sentence2")[0].as_py()) == len(long.strip())


# --- compressed files -------------------------------------------------------------------------

COMPRESSORS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: pa.compress(data, codec="zstd", asbytes=True),
}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_compressed_files_read_like_plain_ones(tmp_path: Path, fmt: str, suffix: str) -> None:
    plain = _write_all_formats(tmp_path, ROWS)[fmt]
    packed = tmp_path / f"pairs.{fmt}.{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](plain.read_bytes()))
    assert packed.read_bytes() != plain.read_bytes()
    result = read_pairs(packed)
    assert result.table.equals(read_pairs(plain).table)
    assert (result.n_rows, result.source) == (3, str(packed))
    stream = read_pairs(io.BytesIO(packed.read_bytes()), format=fmt)  # no name: codec from magic bytes
    assert stream.table.equals(result.table)


def test_compressed_example_and_uppercase_suffix(tmp_path: Path) -> None:
    data = gzip.compress((EXAMPLES / "pairs.csv").read_bytes())
    expected = read_pairs(EXAMPLES / "pairs.csv").table
    assert read_pairs(io.BytesIO(data), name="s3://bucket/pairs.CSV.GZ").table.equals(expected)
    assert read_pairs(io.BytesIO(data), name="pairs.csv.gz?version=2").table.equals(expected)


def test_damaged_or_mislabelled_compressed_files(tmp_path: Path) -> None:
    good = gzip.compress(b"sentence1,sentence2\na,b\n" * 50)
    cut = _write(tmp_path / "cut.csv.gz", "")
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputDataError, match=r"complete gzip-compressed data in .*cut\.csv\.gz.*truncated"):
        read_pairs(cut)
    liar = _write(tmp_path / "plain.csv.zst", "sentence1,sentence2\na,b\n")
    with pytest.raises(InputDataError, match=r"expects zstd data in .*plain\.csv\.zst .*ends in \.zst"):
        read_pairs(liar)
    with pytest.raises(InputDataError, match=r"ending in one of .*followed by one of .*got 'pairs\.gz'"):
        read_pairs(io.BytesIO(good), name="pairs.gz")
    empty = tmp_path / "e.csv.bz2"
    empty.write_bytes(bz2.compress(b""))
    with pytest.raises(InputDataError, match=r"0 bytes after bz2 decompression in .*e\.csv\.bz2"):
        read_pairs(empty)
    with pytest.raises(InputDataError, match=r"0 bytes in .*z\.csv\.gz"):
        read_pairs(_write(tmp_path / "z.csv.gz", ""))


def test_row_numbers_count_decompressed_lines(tmp_path: Path) -> None:
    path = tmp_path / "b.tsv.gz"
    path.write_bytes(gzip.compress(b"sentence1\tsentence2\na\tb\n \tc\n"))
    with pytest.raises(InputDataError, match=r"at line 3") as e:
        read_pairs(path)
    assert e.value.row == 3


# --- errors -----------------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(
        InputDataError, match=r"existing file, got a path that does not exist: '.*nope.csv'"
    ) as e:
        read_pairs(tmp_path / "nope.csv")
    assert e.value.source.endswith("nope.csv")
    with pytest.raises(InputDataError, match=r"got a folder"):
        read_pairs(tmp_path)


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet"])
def test_empty_file(tmp_path: Path, ext: str) -> None:
    with pytest.raises(InputDataError, match=rf"non-empty file, got 0 bytes in .*e\.{ext}"):
        read_pairs(_write(tmp_path / f"e.{ext}", ""))


@pytest.mark.parametrize(
    "ext, text", [("csv", "sentence1,sentence2\n"), ("tsv", "sentence1\tsentence2\n\n"), ("jsonl", "\n  \n")]
)
def test_header_only(tmp_path: Path, ext: str, text: str) -> None:
    with pytest.raises(InputDataError, match=rf"at least one data row in .*h\.{ext}, got none"):
        read_pairs(_write(tmp_path / f"h.{ext}", text))


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.parquet"
    pq.write_table(
        pa.table({"sentence1": pa.array([], pa.string()), "sentence2": pa.array([], pa.string())}), path
    )
    with pytest.raises(InputDataError, match=r"at least one data row in .*h\.parquet"):
        read_pairs(path)


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet"])
def test_missing_columns_lists_found_and_options(tmp_path: Path, ext: str) -> None:
    rows = [("a", "b")]
    path = _write_all_formats(tmp_path, rows)[ext]
    with pytest.raises(
        InputDataError,
        match=r"columns 'text_a' and 'sentence2' in .*, got columns "
        r"\['sentence1', 'sentence2'\] \(missing \['text_a'\]\); .*sentence1_column=",
    ) as e:
        read_pairs(path, sentence1_column="text_a")
    assert e.value.field == "text_a"


def test_blank_sentence_names_line_and_column_and_drop_counts(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.csv", 'sentence1,sentence2\na,b\n"multi\nline",c\n  ,d\ne,f\n')
    with pytest.raises(
        InputDataError,
        match=r"column 'sentence1' of .*b\.csv, got an empty or whitespace-only "
        r"string at line 5; .*on_invalid='drop'",
    ) as e:
        read_pairs(path)
    assert (e.value.row, e.value.field) == (5, "sentence1")
    result = read_pairs(path, on_invalid="drop")
    assert (result.n_rows, result.n_dropped, result.n_pairs) == (4, 1, 3)


def test_jsonl_null_missing_and_non_string(tmp_path: Path) -> None:
    lines = [
        '{"sentence1": "a", "sentence2": "b"}',
        '{"sentence1": null, "sentence2": "b"}',
        '{"sentence1": "c"}',
        '{"sentence1": 5, "sentence2": "d"}',
        '{"sentence1": "e", "sentence2": "f"}',
    ]
    path = _write(tmp_path / "n.jsonl", "\n".join(lines))
    with pytest.raises(InputDataError, match=r"column 'sentence1' .* got a null/missing value at line 2"):
        read_pairs(path)
    result = read_pairs(path, on_invalid="drop")
    assert (result.n_rows, result.n_dropped, result.n_pairs) == (5, 3, 2)
    path = _write(tmp_path / "t.jsonl", lines[0] + "\n" + lines[3])
    with pytest.raises(InputDataError, match=r"got a value of type int \(5\) at line 2"):
        read_pairs(path)


def test_parquet_null_is_reported_as_row(tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"sentence1": ["a", "b", None], "sentence2": ["x", "y", "z"]}), path)
    with pytest.raises(
        InputDataError, match=r"column 'sentence1' of .*n\.parquet, got a null/missing value at row 2;"
    ):
        read_pairs(path)
    assert read_pairs(path, on_invalid="drop").n_dropped == 1


def test_parquet_non_string_column(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pq.write_table(pa.table({"sentence1": [1, 2], "sentence2": ["x", "y"]}), path)
    with pytest.raises(InputDataError, match=r"got a value of type int \(1\) at row 0"):
        read_pairs(path)


def test_all_rows_invalid_under_drop(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"at least one valid pair in .*, got 2 invalid rows"):
        read_pairs(_write(tmp_path / "x.tsv", "sentence1\tsentence2\n\tb\na\t \n"), on_invalid="drop")


def test_invalid_utf8_names_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "u.tsv"
    path.write_bytes(b"sentence1\tsentence2\nok\tfine\nbad \xff byte\tx\n")
    with pytest.raises(
        InputDataError,
        match=r"UTF-8 text in .*u\.tsv, got the invalid byte 0xff at line 3 "
        r"\(byte offset 32\); re-save the file as UTF-8",
    ) as e:
        read_pairs(path)
    assert e.value.row == 3


@pytest.mark.parametrize("content", [b"not a parquet file at all", b"PAR1\x00\x00PAR1"])
def test_corrupted_parquet(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(
        InputDataError, match=r"readable Parquet file in .*bad\.parquet, got: .*not truncated"
    ):
        read_pairs(path)


def test_truncated_parquet(tmp_path: Path) -> None:
    good = _write_all_formats(tmp_path, ROWS)["parquet"].read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputDataError, match=r"readable Parquet file in .*cut\.parquet"):
        read_pairs(path)


def test_malformed_rows(tmp_path: Path) -> None:
    with pytest.raises(
        InputDataError, match=r"2 fields per line in .*f\.tsv .*got 3 at line 3; .*stray tabs"
    ) as e:
        read_pairs(_write(tmp_path / "f.tsv", "sentence1\tsentence2\na\tb\na\tb\tc\n"))
    assert e.value.row == 3
    with pytest.raises(
        InputDataError, match=r"well-formed CSV in .*q\.csv, got .* record starting at line 3"
    ):
        read_pairs(_write(tmp_path / "q.csv", 'sentence1,sentence2\na,b\n"abc"def,x\n'))
    with pytest.raises(InputDataError, match=r"well-formed CSV .* line 3; check the quotes"):
        read_pairs(_write(tmp_path / "u.csv", 'sentence1,sentence2\na,b\n"never closed,x\n'))
    with pytest.raises(
        InputDataError, match=r"one JSON object per line in .*j\.jsonl, got invalid JSON .* at line 2"
    ):
        read_pairs(_write(tmp_path / "j.jsonl", '{"sentence1": "a", "sentence2": "b"}\n{"sentence1": \n'))
    with pytest.raises(InputDataError, match=r"got a JSON list at line 1"):
        read_pairs(_write(tmp_path / "l.jsonl", '["a", "b"]\n'))
