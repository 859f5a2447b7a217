"""`mask-train label DIR`: label the crops of a collect folder in a local web page (train/label).

    mask-train label DIR [--port N] [--host ADDR]

Binds 127.0.0.1 unless --host is given; with --host every request needs the token printed at start.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from pathlib import Path

from engines.errors import UserError
from engines.fileio import require_dir
from train.config import Config
from train.label.server import LabelApp, make_server, new_token
from train.label.store import LabelStore, lock_folder, read_crops


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir", metavar="DIR", help="a collect folder (crops + collected.jsonl) or any image folder"
    )
    p.add_argument("--port", dest="label.port", type=int, metavar="N", help="port (default label.port)")
    p.add_argument(
        "--host",
        metavar="ADDR",
        help="listen on this address instead of 127.0.0.1 (e.g. 0.0.0.0); then a token is required",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    folder = require_dir(args.dir, "folder")
    app, warnings = build_app(folder, cfg, exposed=args.host is not None)
    for line in warnings:
        print(f"mask-train label: warning: {line}", file=sys.stderr)
    host = args.host or "127.0.0.1"
    server = make_server(app, host, cfg.label.port)
    # a server started from a script or `&` inherits an ignored SIGINT: `kill -INT` must still stop it, from
    # the moment the start line says it is there
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print(start_line(app, host, server.server_address[1]), flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # the usual way to stop it: everything is already saved
        print(f"stopped; {_left(app)} of {len(app.crops)} crops left to label", flush=True)
    finally:
        server.server_close()
        app.close()
    return 0


def build_app(folder: Path, cfg: Config, exposed: bool):
    """(LabelApp, warning lines); a folder without crops or a bad labels.csv is a UserError."""
    crops, warnings = read_crops(folder)
    if not crops:
        raise UserError(f"{folder}: no images (.jpg, .png, ...) to label")
    lock = lock_folder(folder)  # one server per folder: two would each save their own labels over the other's
    try:
        store = LabelStore(folder)
    except BaseException:
        lock.close()
        raise
    token = new_token() if exposed else None
    return LabelApp(folder, crops, store, cfg.label.unsure_below, token, lock), warnings


def _left(app) -> int:
    state = app.store.state
    return sum(1 for c in app.crops if not (state(c.file)["mask"] or state(c.file)["discarded"]))


def start_line(app, host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={app.token}" if app.token else "")
    return (
        f"labelling {len(app.crops)} crops in {app.folder} ({_left(app)} left): open {url}  "
        f"(labels -> {app.folder / 'labels.csv'}; Ctrl-C stops)"
    )
