import dataclasses

import pytest

from engines.config import ConfigError
from engines.errors import UserError
from monitor import cli
from monitor.config import Config, SourceConfig, from_dict, load_config
from monitor.sources import kinds as sources
from monitor.sources.kinds import SourceKind, SourceSpec, open_cv, open_error


def _specs(argv):
    return [s.spec for s in cli._sources(cli.build_parser().parse_args(argv), Config())]


def test_every_kind_is_a_flag_and_parses_its_target():
    assert _specs(["--camera", "1"]) == [SourceSpec("camera", 1)]
    assert _specs(["--video", "a.mp4"]) == [SourceSpec("video", "a.mp4")]
    assert _specs(["--url", "rtsp://h/s"]) == [SourceSpec("url", "rtsp://h/s")]


def test_several_sources_in_the_order_given_with_distinct_names():
    args = cli.build_parser().parse_args(
        ["--camera", "0", "--url", "rtsp://10.0.0.5/stream1", "--video", "d/door3.mp4", "--camera", "0"]
    )
    got = cli._sources(args, Config())
    assert [s.spec.kind for s in got] == ["camera", "url", "video", "camera"]
    assert [s.name for s in got] == ["camera0", "10.0.0.5-stream1", "door3", "camera0-2"]


def test_no_source_is_one_line():
    with pytest.raises(UserError, match="no source: give --camera N"):
        cli._sources(cli.build_parser().parse_args([]), Config())


def test_sources_from_config_tables(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        "[[sources]]\nname = 'front'\nkind = 'camera'\naddress = 1\ndetect_every = 2\n"
        "[[sources]]\nkind = 'video'\naddress = 'clips/back.mp4'\nrealtime = true\n"
    )
    cfg = load_config(p)
    got = cli._sources(cli.build_parser().parse_args([]), cfg)
    assert [(s.name, s.spec, s.realtime, s.monitor) for s in got] == [
        ("front", SourceSpec("camera", 1), False, {"detect_every": 2}),
        ("back", SourceSpec("video", "clips/back.mp4"), True, {}),
    ]
    assert "sources" not in Config().to_dict()  # no [[sources]] by default; config.toml stays equal


@pytest.mark.parametrize(
    "text, error",
    [
        ("[[sources]]\nkind = 'webcam'\n", r"\[\[sources\]\] #1.kind = 'webcam' is not one of"),
        (
            "[[sources]]\nkind = 'camera'\nadress = '0'\n",
            r"unknown key 'adress' \(did you mean 'address'\?\)",
        ),
        ("[[sources]]\nname = 'a/b'\n", r"source name 'a/b' must be"),
        ("[[sources]]\nname = 'a'\n[[sources]]\nname = 'a'\naddress = '1'\n", r"the name 'a' is used twice"),
        ("[[sources]]\nkind = 'camera'\naddress = 'front'\n", r"address 'front' is not a N"),
    ],
)
def test_bad_source_tables_are_one_line(tmp_path, text, error):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(UserError, match=error):
        cli._sources(cli.build_parser().parse_args([]), load_config(p))


def test_source_kinds_are_the_rows_of_sources(monkeypatch):
    with pytest.raises(ConfigError, match=r"kind = 'camra' is not one of .*did you mean 'camera'"):
        from_dict({"sources": [{"kind": "camra"}]})
    assert (
        SourceConfig().kind in sources.SOURCES
    )  # the default is a row (a config is checked without the table)
    monkeypatch.setitem(sources.SOURCES, "screen", sources.SOURCES["camera"])  # a new row is a new kind
    assert from_dict({"sources": [{"kind": "screen", "address": "1"}]}).sources[0].kind == "screen"


def test_names_live_and_open_errors_come_from_the_row():
    assert SourceSpec("camera", 0).live and SourceSpec("url", "rtsp://x").live
    assert not SourceSpec("video", "a.mp4").live
    assert SourceSpec("url", "rtsp://x").describe() == "stream rtsp://x"
    assert "camera 3 cannot be opened" in str(open_error(SourceSpec("camera", 3)))
    with pytest.raises(ValueError, match="unknown source kind"):
        SourceSpec("webcam", 0)


def test_a_missing_video_file_is_one_line_before_opencv_runs(tmp_path):
    with pytest.raises(UserError, match=r"video file .*nope.mp4 does not exist"):
        open_cv(SourceSpec("video", str(tmp_path / "nope.mp4")))


def test_a_new_kind_is_one_row(monkeypatch):
    opened = []
    row = SourceKind(
        "frames",
        "DIR",
        "a folder of images",
        str,
        False,
        "frames in {target}",
        "frames in {target} cannot be read",
        lambda target: opened.append(target) or "DEVICE",
    )
    monkeypatch.setitem(sources.SOURCES, "frames", row)
    args = cli.build_parser().parse_args(["--frames", "shots/"])
    (source,) = cli._sources(args, Config())
    spec = source.spec
    assert spec == SourceSpec("frames", "shots/") and spec.describe() == "frames in shots/"
    assert open_cv(spec) == "DEVICE" and opened == ["shots/"]
    assert dataclasses.replace(row, live=True).live
