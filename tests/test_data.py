"""Labelled text files: every malformed file gives an error naming the file and the problem."""

import json

import pytest

from objectives.data import DataError, label_ids, read_labelled_text, read_texts
from objectives.encoded import load_encoded

MIXED = '{"sentence": "a", "label": 1}\n{"sentence": "b", "label": "x"}\n'


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_tsv_csv_and_jsonl(tmp_path, sst2):
    table = read_labelled_text(sst2 / "test.tsv")
    assert len(table) == 872 and table.label_set() == {0, 1}
    csv = read_labelled_text(write(tmp_path, "a.csv", 'sentence,label\n"good, really",pos\nbad,neg\n'))
    assert csv.texts == ["good, really", "bad"] and csv.labels == ["pos", "neg"]
    rows = [{"text": "fine", "y": 1}, {"text": "poor", "y": 0}]
    jsonl = write(tmp_path, "a.jsonl", "\n".join(json.dumps(r) for r in rows))
    assert read_labelled_text(jsonl, "text", "y").labels == [1, 0]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.tsv", "", "is empty"),
        ("header.tsv", "sentence\tlabel\n", "header but no rows"),
        ("cols.tsv", "text\tlabel\nx\t1\n", r"no column 'sentence' \(it has 2 columns"),
        ("float.tsv", "sentence\tlabel\nx\t0.5\n", "label in row 1 is float"),
        ("missing.tsv", "sentence\tlabel\nx\t1\ny\t\n", "label in row 2 is missing"),
        ("mixed.jsonl", MIXED, "labels mix integers and strings"),
        ("list.jsonl", '{"sentence": "a", "label": [1]}\n', "label in row 1 is list"),
        ("broken.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": ', "cannot parse as jsonl"),
        ("data.xml", "<a/>", "unsupported file type '.xml'"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, name, text, message):
    with pytest.raises(DataError, match=message):
        read_labelled_text(write(tmp_path, name, text))


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_labelled_text(tmp_path / "nope.tsv")


def test_label_ids():
    assert label_ids([1, 0, 2]) == ([1, 0, 2], None)
    assert label_ids(["pos", "neg", "pos"]) == ([1, 0, 1], {0: "neg", 1: "pos"})
    with pytest.raises(DataError, match=">= 0"):
        label_ids([-1, 0])


def test_encoded_file_errors(tmp_path):
    with pytest.raises(DataError, match="line 2: not an encoded example"):
        load_encoded(write(tmp_path, "e.jsonl", '{"input_ids": [1], "label": 0}\n{"ids": [1]}\n'))
    with pytest.raises(DataError, match="line 1: input_ids must be a list of non-negative ints"):
        load_encoded(write(tmp_path, "f.jsonl", '{"input_ids": [1, -2], "label": 0}\n'))
    with pytest.raises(DataError, match="holds no examples"):
        load_encoded(write(tmp_path, "g.jsonl", "\n"))


NEWS = "Sports\tPrivate match report number one\nWorld\tSecret summit notes\nBusiness\tQuarterly figures\n"


def test_header_less_files_by_position_and_no_private_row_in_messages(tmp_path):
    path = write(tmp_path, "news.tsv", NEWS)
    table = read_labelled_text(path, "1", "0", header=False)
    assert table.texts[0] == "Private match report number one" and len(table) == 3
    assert table.labels == ["Sports", "World", "Business"]
    assert read_texts(path, "1", header=False)[2] == "Quarterly figures"
    for columns, header, message in [
        (("sentence", "label"), True, "no column 'sentence'.*--no-header"),
        (("sentence", "label"), False, "no header line, so its columns have no names"),
        (("2", "0"), False, "has 2 columns; there is no column at position 2"),
    ]:
        with pytest.raises(DataError, match=message) as refused:
            read_labelled_text(path, *columns, header=header)
        assert "Private match" not in str(refused.value) and "Sports" not in str(refused.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "is not a regular file"),
        (lambda d: write(d, "bin.tsv", "sentence\tlabel\n\0\1\2\t1\n"), "is a binary file"),
        (
            lambda d: write_bytes(d / "latin.tsv", b"sentence\tlabel\ncaf\xe9\t1\n"),
            "not UTF-8",
        ),
    ],
)
def test_files_that_are_not_text_are_refused(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        read_labelled_text(make(tmp_path))
