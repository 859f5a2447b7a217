import dataclasses

import pytest

from engines.errors import UserError
from monitor import cli, sources
from monitor.sources import SourceKind, SourceSpec, open_cv, open_error


def test_every_kind_is_a_flag_and_parses_its_target():
    parser = cli.build_parser()
    assert cli._source(parser.parse_args(["--camera", "1"])) == SourceSpec("camera", 1)
    assert cli._source(parser.parse_args(["--video", "a.mp4"])) == SourceSpec("video", "a.mp4")
    assert cli._source(parser.parse_args(["--url", "rtsp://h/s"])) == SourceSpec("url", "rtsp://h/s")
    with pytest.raises(SystemExit):
        parser.parse_args(["--camera", "0", "--video", "a.mp4"])  # one source at a time


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
    spec = cli._source(args)
    assert spec == SourceSpec("frames", "shots/") and spec.describe() == "frames in shots/"
    assert open_cv(spec) == "DEVICE" and opened == ["shots/"]
    assert dataclasses.replace(row, live=True).live
