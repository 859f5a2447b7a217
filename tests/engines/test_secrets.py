"""engines.secrets: the one redaction of addresses (in free text and as one address), a password put into a
URL that names only the user, and a password read from a file."""

from __future__ import annotations

import pytest

from engines.errors import UserError, run_cli
from engines.fileio import read_password_file
from engines.secrets import redact_address, redact_url, with_password


@pytest.mark.parametrize(
    "text, shown",
    [
        ("rtsp://admin:pw@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsp://admin@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
        ("http://cam.local/live.mjpg?user=a&pwd=b", "http://cam.local/live.mjpg?***"),
        ("http://u:p@h/x?token=t", "http://***@h/x?***"),
        ("rtsp://u:p@ss/w?rd@h/x", "rtsp://***@h/x"),  # an @, / or ? in the password: up to the last @
        ("mqtts://u:p@broker:8883/site", "mqtts://***@broker:8883/site"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),  # nothing secret: as it was
        ("entrance.mp4", "entrance.mp4"),
        (
            "[rtsp @ 0x55] method DESCRIBE failed: 401 'rtsp://a:b@h/x' and\nhttp://c:d@g/y?k=v, again",
            "[rtsp @ 0x55] method DESCRIBE failed: 401 'rtsp://***@h/x' and\nhttp://***@g/y?*** again",
        ),
    ],
)
def test_redact_url_hides_user_password_and_query_in_any_text(text, shown):
    assert redact_url(text) == shown


def test_redact_address_takes_the_whole_address_even_with_a_space_or_quote_in_the_password():
    assert redact_address("rtsp://admin:my pass'word@h/x") == "rtsp://***@h/x"
    assert "pass" in redact_url("rtsp://admin:my pass@h/x")  # free text ends a URL at a space
    assert redact_address(0) == "0" and redact_address("door 3.mp4") == "door 3.mp4"


def test_with_password_fills_only_a_url_that_names_a_user_and_no_password():
    assert (
        with_password("rtsp://admin@h:554/x?a=1", "p@ss/w:rd") == "rtsp://admin:p%40ss%2Fw%3Ard@h:554/x?a=1"
    )
    assert with_password("rtsp://admin@h/x", "s3cret!") == "rtsp://admin:s3cret!@h/x"
    assert with_password("rtsp://admin:mine@h/x", "env") == "rtsp://admin:mine@h/x"  # the URL's wins
    assert with_password("rtsp://h/x", "env") == "rtsp://h/x"  # no user: anonymous
    assert with_password("rtsp://admin@h/x", None) == "rtsp://admin@h/x"


def test_read_password_file_takes_the_first_line(tmp_path):
    f = tmp_path / "pw"
    f.write_text("s3cret with space\n")
    assert read_password_file(f, "--mqtt-password-file") == "s3cret with space"
    f.write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        read_password_file(f, "--mqtt-password-file")
    with pytest.raises(UserError, match="nope does not exist"):
        read_password_file(tmp_path / "nope", "--mqtt-password-file")


def test_run_cli_redacts_error_lines_and_tracebacks(capsys):
    def user_error():
        raise UserError("stream rtsp://u:s3cret@h/x cannot be opened")

    def bug():
        raise RuntimeError("could not open rtsp://u:s3cret@h/x")

    for main, code in ((user_error, 2), (bug, 1)):
        with pytest.raises(SystemExit) as exc:
            run_cli(main, "prog")
        err = capsys.readouterr().err
        assert exc.value.code == code and "rtsp://***@h/x" in err and "s3cret" not in err
    assert "Traceback" in err and "RuntimeError" in err
