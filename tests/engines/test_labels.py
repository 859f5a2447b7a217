import numpy as np
import pytest

from engines import labels as L


def test_encode_decode_roundtrip_covers_all_18_classes():
    seen = set()
    for m in range(3):
        for g in range(2):
            for a in range(3):
                c = L.encode(m, g, a)
                assert c == m * 6 + g * 3 + a
                assert L.decode(c) == L.Label(m, g, a)
                seen.add(c)
    assert seen == set(range(18))
    assert L.encode(np.int64(2), np.int32(1), np.uint8(2)) == 17


def test_names():
    assert L.class_name(0) == "wear/male/<30"
    assert L.class_name(17) == "not_wear/female/>=60"
    assert L.MASK_DISPLAY[L.decode(7).mask] == "incorrect mask"  # what the monitor's screen shows
    assert len(set(L.class_names())) == 18


@pytest.mark.parametrize("bad", [-1, 18, 3.0, "1", True])
def test_decode_rejects_bad_class(bad):
    with pytest.raises(L.LabelError):
        L.decode(bad)


def test_age_groups_and_configurable_threshold():
    assert [L.age_group(a) for a in (0, 29, 30, 59, 60, 90)] == [0, 0, 1, 1, 2, 2]
    assert L.age_group(58, old_threshold=58) == 2
    assert L.age_group(57, old_threshold=58) == 1
    with pytest.raises(L.LabelError):
        L.age_group(150)


def test_parse_person_dir():
    p = L.parse_person_dir("000004_male_Asian_54")
    assert (p.id, p.gender, p.race, p.age_years, p.age()) == ("000004", 0, "Asian", 54, 1)
    assert L.parse_person_dir("006959_female_Asian_60").age() == 2
    assert L.parse_person_dir("003397_Female_Asian_19").gender == 1  # case-insensitive gender


@pytest.mark.parametrize(
    "name",
    ["000001_female_Asian", "000001_other_Asian_20", "junk", "000001_male_Asian_x", "000001_male_Asian_200"],
)
def test_parse_person_dir_errors_name_the_folder(name):
    with pytest.raises(L.LabelError, match=name):
        L.parse_person_dir(name)


def test_parse_mask_stem_any_suffix():
    assert [L.parse_mask_stem(f"mask{i}.jpg") for i in range(1, 6)] == [0] * 5
    assert L.parse_mask_stem("incorrect_mask.png") == 1
    assert L.parse_mask_stem("normal.jpeg") == 2
    with pytest.raises(L.LabelError, match="mask6"):
        L.parse_mask_stem("mask6.jpg")
    with pytest.raises(L.LabelError, match="suffix"):
        L.parse_mask_stem("normal.txt")


def test_a_person_folder_and_a_file_stem_make_the_class():
    p = L.parse_person_dir("000010_female_Asian_61")
    assert L.Label(L.parse_mask_stem("incorrect_mask.jpg"), p.gender, p.age()).cls == 1 * 6 + 1 * 3 + 2
    p = L.parse_person_dir("000010_female_Asian_59")
    assert L.Label(L.parse_mask_stem("normal.png"), p.gender, p.age(59)).cls == 2 * 6 + 3 + 2
