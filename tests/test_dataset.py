"""Loading and validating user data: good input, and every kind of bad input with its message."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from mollia_core.dataset import Dataset, DatasetError, load_dataset, read_table

GOOD_CSV = (
    "id,text,label\n"
    "a1,The striker scored twice,sport\n"
    'a2,"Shares fell, then rose",business\n'
    "a3,Parliament votes today,\n"
    "a4,New phone unveiled,tech\n"
)


class Upload(io.BytesIO):
    """Stands in for Streamlit's UploadedFile: a BytesIO with a name."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def test_loads_a_good_csv_from_path_bytes_and_upload(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")
    for source in (path, str(path), GOOD_CSV.encode(), Upload(GOOD_CSV.encode(), "news.csv")):
        data = load_dataset(source, "text", id_column="id", label_column="label")
        assert isinstance(data, Dataset)
        assert len(data) == 4
        assert data.texts[1] == "Shares fell, then rose"
        assert data.ids == ("a1", "a2", "a3", "a4")
        assert data.labels == ("business", "sport", "tech")  # inferred, sorted
        np.testing.assert_array_equal(data.gold, [1, 0, -1, 2])
        np.testing.assert_array_equal(data.labeled_indices(), [0, 1, 3])
        assert data.label_index("tech") == 2
        assert list(data.frame.columns) == ["id", "text", "label"]


def test_explicit_label_set_keeps_its_order_and_allows_unused_labels():
    data = load_dataset(GOOD_CSV.encode(), "text", label_column="label", labels=["tech", "sport", "business", "arts"])
    assert data.labels == ("tech", "sport", "business", "arts")
    np.testing.assert_array_equal(data.gold, [1, 2, -1, 0])


def test_generated_ids_and_no_label_column():
    data = load_dataset(GOOD_CSV.encode(), "text")
    assert data.ids == ("1", "2", "3", "4")
    assert data.labels == ()
    assert (data.gold == -1).all()


def test_csv_cells_are_kept_as_written():
    data = load_dataset(b"id,text\n007,hello\n0.50,world\n", "text", id_column="id")
    assert data.ids == ("007", "0.50")


def test_semicolon_and_tab_separated_files():
    semi = load_dataset("text;label\nbonjour, le monde;fr\nhello;en\n".encode(), "text", label_column="label")
    assert semi.texts == ("bonjour, le monde", "hello") and semi.labels == ("en", "fr")
    tab = load_dataset(b"text\tlabel\nhello, world\ten\n", "text", label_column="label", name="x.tsv")
    assert tab.texts == ("hello, world",)


def test_utf8_bom_is_accepted():
    data = load_dataset("\ufefftext,label\ncafé,fr\n".encode("utf-8"), "text", label_column="label")
    assert data.texts == ("café",)
    assert "text" in data.frame.columns


def test_dataframe_source_with_numeric_labels_and_ids():
    frame = pd.DataFrame({"review": ["good", "bad", "meh"], "y": [1, 0, np.nan], "key": [10, 11, 12]})
    data = load_dataset(frame, "review", id_column="key", label_column="y")
    assert data.labels == ("0", "1")
    np.testing.assert_array_equal(data.gold, [1, 0, -1])
    assert data.ids == ("10", "11", "12")
    assert data.frame is not frame  # the caller's frame is not modified


def test_jsonl_json_and_parquet_read_back(tmp_path):
    frame = pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"]})
    jsonl = "\n".join(json.dumps(r) for r in frame.to_dict("records")).encode()
    as_json = json.dumps(frame.to_dict("records")).encode()
    parquet = tmp_path / "t.parquet"
    frame.to_parquet(parquet)
    for source, name in ((jsonl, "t.jsonl"), (jsonl, None), (as_json, "t.json"), (parquet, None)):
        data = load_dataset(source, "text", label_column="label", name=name)
        assert data.texts == ("a b", "c d") and data.labels == ("x", "y")


# --- bad input ---------------------------------------------------------------------------------


def test_missing_column_lists_the_available_ones():
    with pytest.raises(DatasetError) as caught:
        load_dataset(GOOD_CSV.encode(), "Text")
    message = str(caught.value)
    assert caught.value.column == "Text"
    assert "'Text' not found" in message
    assert "'id', 'text', 'label'" in message
    assert "Did you mean 'text'" in message


def test_missing_label_and_id_columns_are_named():
    with pytest.raises(DatasetError, match="column 'gold' not found") as caught:
        load_dataset(GOOD_CSV.encode(), "text", label_column="gold")
    assert caught.value.column == "gold"
    with pytest.raises(DatasetError, match="column 'key' not found"):
        load_dataset(GOOD_CSV.encode(), "text", id_column="key")


def test_empty_text_cells_name_the_rows_and_the_fix():
    csv = b"text,label\nfine,a\n,b\n   ,a\nok,b\n"
    with pytest.raises(DatasetError) as caught:
        load_dataset(csv, "text", label_column="label")
    error = caught.value
    assert error.column == "text"
    assert error.rows == (2, 3) and error.row == 2
    assert "empty texts in rows 2 and 3" in str(error)
    assert "fill them in or delete those rows" in str(error)


def test_non_text_cells_in_the_text_column():
    frame = pd.DataFrame({"text": ["fine", 3.5, "ok", None], "label": ["a", "b", "a", "b"]})
    with pytest.raises(DatasetError) as caught:
        load_dataset(frame, "text")
    assert caught.value.rows == (2,)
    assert "not text in row 2" in str(caught.value) and "make those cells text" in str(caught.value)


def test_a_column_of_numbers_chosen_as_text_column():
    frame = pd.DataFrame({"n": [1, 2], "body": ["x", "y"]})
    with pytest.raises(DatasetError) as caught:
        load_dataset(frame, "n")
    assert caught.value.column == "n"
    assert "holds no text" in str(caught.value) and "'body'" in str(caught.value)


def test_label_outside_the_label_set_names_rows_and_set():
    csv = b"text,label\none,pos\ntwo,Neg\nthree,neutral\nfour,neg\n"
    with pytest.raises(DatasetError) as caught:
        load_dataset(csv, "text", label_column="label", labels=["pos", "neg"])
    error = caught.value
    message = str(error)
    assert error.column == "label" and error.rows == (2, 3)
    assert "['pos', 'neg']" in message
    assert "'Neg', 'neutral'" in message
    assert "rows 2 and 3" in message
    assert "'Neg' differs from 'neg' only in case" in message
    assert "Add them to the label set" in message


def test_bad_label_sets():
    with pytest.raises(DatasetError, match="label set is empty"):
        load_dataset(GOOD_CSV.encode(), "text", labels=[])
    with pytest.raises(DatasetError, match="more than once"):
        load_dataset(GOOD_CSV.encode(), "text", labels=["a", "b", "a"])
    with pytest.raises(DatasetError, match="empty label"):
        load_dataset(GOOD_CSV.encode(), "text", labels=["a", " "])
    with pytest.raises(DatasetError, match="list of labels"):
        load_dataset(GOOD_CSV.encode(), "text", labels="positive")


def test_duplicate_ids_name_the_ids_and_rows():
    csv = b"id,text\nx,one\ny,two\nx,three\nz,four\ny,five\n"
    with pytest.raises(DatasetError) as caught:
        load_dataset(csv, "text", id_column="id")
    message = str(caught.value)
    assert caught.value.column == "id"
    assert caught.value.rows == (1, 2, 3, 5)
    assert "'x' in rows 1, 3" in message and "'y' in rows 2, 5" in message
    assert "Make the ids unique" in message


def test_empty_ids():
    with pytest.raises(DatasetError, match=r"empty in row 2 .*give every row an id") as caught:
        load_dataset(b"id,text\nx,one\n,two\n", "text", id_column="id")
    assert caught.value.row == 2


def test_non_utf8_file_names_the_byte_and_line():
    data = "text,label\nfine,a\ncaf\u00e9,b\n".encode("latin-1")
    with pytest.raises(DatasetError) as caught:
        load_dataset(data, "text")
    message = str(caught.value)
    assert "not UTF-8" in message
    assert "byte 0xe9" in message and "line 3" in message
    assert "Re-save the file with UTF-8" in message
    assert caught.value.row == 2


def test_utf16_file_is_refused_with_the_fix():
    with pytest.raises(DatasetError, match="UTF-16.*re-save it as UTF-8"):
        read_table("text\nhello\n".encode("utf-16"))


@pytest.mark.parametrize("data", [b"", b"   \n\n"])
def test_empty_file(data):
    with pytest.raises(DatasetError, match="the file is empty"):
        read_table(data)


def test_header_without_rows():
    with pytest.raises(DatasetError) as caught:
        load_dataset(b"text,label\n", "text")
    assert "no rows" in str(caught.value) and "'text', 'label'" in str(caught.value)
    assert "Add at least one row" in str(caught.value)


def test_empty_dataframe():
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(pd.DataFrame({"text": []}), "text")


def test_unparseable_csv_names_the_line_and_the_fix():
    csv = b"text,label\nfine,a\nhello, world,b\n"
    with pytest.raises(DatasetError) as caught:
        read_table(csv)
    message = str(caught.value)
    assert "line 3 (row 2) has 3 cells but the header has 2" in message
    assert "put double quotes around such cells" in message
    assert caught.value.row == 2


def test_unclosed_quote():
    with pytest.raises(DatasetError, match="cannot read the CSV.*quotes"):
        read_table(b'text,label\n"never closed,a\nnext,b\n')


def test_bad_json_lines_names_the_line():
    with pytest.raises(DatasetError, match="line 2 is not valid JSON") as caught:
        read_table(b'{"text": "a"}\n{"text": \n', name="t.jsonl")
    assert caught.value.row == 2


def test_pickles_and_workbooks_are_refused(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(pd.DataFrame({"text": ["a"]})))
    with pytest.raises(DatasetError, match="never opens"):
        read_table(path)
    with pytest.raises(DatasetError, match="CSV UTF-8"):
        read_table(b"PK\x03\x04rest-of-a-zip", name="book.xlsx")


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(DatasetError, match="not found: check the path"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="cannot read a table from a int"):
        read_table(42)  # type: ignore[arg-type]


def test_unknown_label_name():
    data = load_dataset(GOOD_CSV.encode(), "text", label_column="label")
    with pytest.raises(DatasetError, match="not in the label set"):
        data.label_index("arts")


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)
