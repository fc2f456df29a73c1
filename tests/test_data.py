"""Labelled text files: every malformed file gives an error naming the file and the problem."""

import json

import pytest

from objectives.data import DataError, label_ids, read_labelled_text
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
        ("cols.tsv", "text\tlabel\nx\t1\n", r"no column\(s\) 'sentence'; it has 'text', 'label'"),
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
