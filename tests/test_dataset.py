"""Loading and validating user data: good input, and every kind of bad input with its message."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from mollia_core.dataset import Dataset, DatasetError, load_dataset, open_table, read_table

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
    tab = load_dataset(b"text\tlabel\nhello, world\ten\nhallo\tde\n", "text", label_column="label", name="x.tsv")
    assert tab.texts == ("hello, world", "hallo")


def test_utf8_bom_is_accepted():
    data = load_dataset("\ufefftext,label\ncafé,fr\ntea,en\n".encode("utf-8"), "text", label_column="label")
    assert data.texts == ("café", "tea")
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
    assert message.startswith("cannot read the CSV: row 2 has 3 fields but the header has 2 (comma-separated;")
    assert "row 2 is on line 3 of the file" in message
    assert 'quote cells that contain a comma: put double quotes around them ("like, this")' in message
    assert caught.value.row == 2


def test_every_row_must_have_the_header_field_count():
    csv = (
        b"id,text,label\na1,Hello there,sport\na2,Shares fell, then rose,business\na3,ok,tech\n"
        b"a4,Polls open,politics\na5,Rain,weather\na6,Goal,sport\na7,Up, down,business\n"
    )
    with pytest.raises(DatasetError) as caught:
        load_dataset(csv, "text", id_column="id", label_column="label")
    assert "cannot read the CSV: rows 2 and 7 have 4 fields but the header has 3" in str(caught.value)
    assert caught.value.rows == (2, 7)


def test_an_extra_cell_in_the_first_row_does_not_shift_the_columns():
    # pandas would take the first column as an index and report "empty texts" in a row that has text.
    with pytest.raises(DatasetError) as caught:
        load_dataset(b"id,text\n1,hello, world\n2,bye\n", "text", id_column="id")
    assert "row 1 has 3 fields but the header has 2" in str(caught.value)
    assert "empty texts" not in str(caught.value) and caught.value.rows == (1,)


def test_short_rows_are_refused_not_padded():
    with pytest.raises(DatasetError) as caught:
        read_table(b"id,text,label\n1,hi,a\n2,bye\n3,x,y\n4,z\n")
    message = str(caught.value)
    assert "rows 2 and 4 have 2 fields but the header has 3" in message
    assert "give every row 3 fields (an empty cell is still written, as two commas in a row)" in message
    with pytest.raises(DatasetError, match="row 1 has 4 fields and row 2 has 2 fields but the header has 3"):
        read_table(b"id,text,label\n1,hi,a,b\n2,bye\n")


def test_unclosed_quote():
    with pytest.raises(DatasetError) as caught:
        read_table(b'text,label\nfine,a\n"never closed,a\nnext,b\n')
    assert str(caught.value).startswith("cannot read the CSV at line 4 (unexpected end of data): check that quotes")
    assert caught.value.row == 2


def test_a_header_naming_a_column_twice_is_refused():
    with pytest.raises(DatasetError) as caught:
        read_table(b"sport,sport\ntennis,golf\n")
    assert "names the same column more than once: 'sport' (fields 1, 2)" in str(caught.value)
    assert "if the file has no header line, add one" in str(caught.value)


def test_blank_lines_are_skipped_and_an_empty_header_cell_is_named_as_pandas_does():
    frame = read_table(b",text,label\r\n0,a,x\r\n\r\n1,\"b\r\nc\",y\r\n\r\n")
    assert list(frame.columns) == ["Unnamed: 0", "text", "label"]
    assert frame["text"].tolist() == ["a", "b\r\nc"]


@pytest.mark.parametrize(
    "content, kind",
    [
        (b'{"text": "a b", "label": "x"}\n{"text": "c d", "label": "y"}\n', "JSON Lines"),
        (b'[{"text": "a b", "label": "x"}, {"text": "c d", "label": "y"}]', "JSON"),
        (b'[\n  {"text": "a b", "label": "x"},\n  {"text": "c d", "label": "y"}\n]\n', "JSON"),
    ],
)
def test_json_content_is_read_as_json_whatever_the_file_name(content, kind):
    table = open_table(Upload(content, "data.csv"))
    assert table.format == kind
    assert table.warnings == (f"'data.csv' holds {kind}, not CSV: it was read as {kind}.",)
    assert table.frame.to_dict("list") == {"text": ["a b", "c d"], "label": ["x", "y"]}
    data = load_dataset(content, "text", label_column="label", name="data.csv")
    assert data.texts == ("a b", "c d") and data.labels == ("x", "y")


def test_broken_json_lines_in_a_csv_file_is_named_as_json_lines():
    with pytest.raises(DatasetError, match="cannot read the JSON Lines file: line 2 is not valid JSON"):
        read_table(b'{"text": "a"}\n{"text": \n', name="data.csv")


def test_a_header_line_that_looks_like_data_is_pointed_out():
    table = open_table(b"The striker scored twice,sport\nShares fell,business\nNew phone,sport\n", name="news.csv")
    assert len(table.warnings) == 1
    warning = table.warnings[0]
    assert warning.startswith(
        "The first line was read as the column names ('The striker scored twice', 'sport'), but it looks like a "
        "row of data: 'The striker scored twice' reads like a text; 'sport' is also a value in its column."
    )
    assert "If the file has no header line, add one naming the columns (e.g. text,label)" in warning
    assert "'1' is a number" in open_table(b"1,hello,sport\n2,bye,tech\n").warnings[0]
    good = open_table(GOOD_CSV.encode(), name="news.csv")
    assert good.warnings == () and good.format == "CSV (comma-separated)"


@pytest.mark.parametrize(
    "source, name",
    [
        (b"id,text\n1,fine\n2,hel\x00lo\n", "data.csv"),
        (b'{"text": "fine"}\n{"text": "hel\\u0000lo"}\n', "data.jsonl"),
        (pd.DataFrame({"text": ["fine", "hel\x00lo"]}), None),
    ],
)
def test_nul_characters_are_refused_with_the_row(source, name):
    with pytest.raises(DatasetError) as caught:
        load_dataset(source, "text", name=name)
    assert str(caught.value).startswith(
        "column 'text' holds NUL characters (\\x00) in row 2 (counting from 1 below the header): a text file "
        "never holds them"
    )
    assert caught.value.rows == (2,) and caught.value.column == "text"
    with pytest.raises(DatasetError, match=r"the header holds NUL characters \(\\x00\), in the column name"):
        read_table(b"id,te\x00xt\n1,fine\n")


def test_a_single_label_is_refused_at_import():
    csv = b"text,label\none,sport\ntwo,sport\nthree,\n"
    with pytest.raises(DatasetError) as caught:
        load_dataset(csv, "text", label_column="label")
    assert str(caught.value) == (
        "label column 'label' holds only one label, 'sport': MoLLIA learns to tell labels apart, so it needs at "
        "least two. Type the full label set (the rows labeled 'sport' keep their label), or choose another label "
        "column"
    )
    with pytest.raises(DatasetError, match="^the label set has only one label, 'sport': .* Add the other labels"):
        load_dataset(csv, "text", label_column="label", labels=["sport"])
    with pytest.raises(DatasetError, match="^label column 'label' is empty in every row: choose the column"):
        load_dataset(b"text,label\none,\ntwo,\n", "text", label_column="label")
    typed = load_dataset(csv, "text", label_column="label", labels=["sport", "politics"])
    assert typed.labels == ("sport", "politics") and typed.gold.tolist() == [0, 0, -1]


def test_refused_input_leaves_the_projects_data_as_it_was(tmp_path, monkeypatch, mollia_home):
    from mollia_core.project import Project

    monkeypatch.setenv("MOLLIA_PROJECTS_DIR", str(tmp_path / "projects"))
    project = Project.create("kept")
    project.set_dataset(read_table(GOOD_CSV.encode()), "text", id_column="id", label_column="label")
    bad_frames = [
        pd.DataFrame({"id": ["x1", "x2"], "text": ["ok", "nul\x00here"], "label": ["sport", "tech"]}),
        pd.DataFrame({"id": ["x1", "x2"], "text": ["ok", "fine"], "label": ["sport", "sport"]}),
    ]
    for frame in bad_frames:
        with pytest.raises(DatasetError):
            project.set_dataset(frame, "text", id_column="id", label_column="label")
    reopened = Project.open("kept")
    assert list(reopened.text_ids) == ["a1", "a2", "a3", "a4"]
    assert list(reopened.texts) == ["The striker scored twice", "Shares fell, then rose", "Parliament votes today",
                                    "New phone unveiled"]
    assert reopened.labels == ("business", "sport", "tech")


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
