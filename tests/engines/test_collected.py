"""engines.collected: the one definition of a collected.jsonl line, for its writers and its readers."""

import json

import pytest

from engines.collected import CollectedRecord


def test_a_record_goes_through_its_line_unchanged():
    rec = CollectedRecord(
        file="run_000001.jpg",
        source="door",
        time=3.25,
        frame=96,
        track=2,
        predicted={"mask": "not_wear"},
        probs={"mask": [0.05, 0.13, 0.82]},
        reason="uncertain",
        model_sha256="9f2c",
    )
    line = rec.to_json()
    assert "\n" not in line and json.loads(line)["track"] == 2
    assert CollectedRecord.from_json(line) == rec
    assert rec.guess() == "not_wear" and rec.top_mask_probability() == pytest.approx(0.82)


def test_only_file_is_required_and_a_key_of_the_wrong_type_reads_as_absent():
    rec = CollectedRecord.from_json('{"file": "a.jpg", "track": "two", "probs": {"mask": "x"}, "extra": 1}')
    assert rec == CollectedRecord("a.jpg")
    assert json.loads(rec.to_json()) == {"file": "a.jpg", "predicted": {}, "probs": {}}
    assert rec.guess() == "" and rec.top_mask_probability() is None


@pytest.mark.parametrize("line", ["not json", "[1]", '{"track": 1}', '{"file": "../x.jpg"}', '{"file": ""}'])
def test_a_line_that_is_not_a_record_is_refused(line):
    with pytest.raises(ValueError, match="plain 'file' name"):
        CollectedRecord.from_json(line)
