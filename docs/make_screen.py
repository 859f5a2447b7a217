"""Draw docs/img/live-screen.svg: one frame of mask-monitor's live screen, from a real run.

The monitor runs on the bundled sample video with the bundled demo model and the config's detector, exactly
as the README's first command does (without --headless); when frame FRAME has been processed, the
dashboard that the live screen shows is rendered into a recording rich Console and saved as SVG.

    python docs/make_screen.py [--frame 400] [--width 100] [--out docs/img/live-screen.svg]

(about half a minute on a CPU). The frames/s and ms per stage are those of the machine that draws it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="samples/entrance.mp4", help="relative to the repository root")
    parser.add_argument("--frame", type=int, default=400, help="the frame whose screen is drawn")
    parser.add_argument("--width", type=int, default=100, help="terminal columns")
    parser.add_argument("--out", default=str(REPO / "docs" / "img" / "live-screen.svg"))
    args = parser.parse_args(argv)
    os.chdir(REPO)  # the screen shows the path as given: relative, as a user types it

    from rich.console import Console

    from engines.device import set_torch_threads
    from engines.faces import create_detector
    from engines.formats import load_engine
    from monitor.app import Monitor, Options
    from monitor.config import load_config
    from monitor.sources.kinds import SourceSpec

    cfg = load_config(None)
    set_torch_threads(cfg.monitor.torch_threads)
    engine = load_engine(cfg.locate(cfg.engine.path), cfg.engine.device, cfg.engine.threads)
    detector = create_detector(cfg)
    console = Console(record=True, width=args.width, file=io.StringIO(), force_terminal=True)
    drawn: list[bool] = []
    mon: Monitor | None = None

    def on_result(result) -> None:
        if not drawn and not result.final and result.frame.index >= args.frame and mon is not None:
            console.print(mon.dashboard.render())
            drawn.append(True)

    mon = Monitor(
        cfg,
        SourceSpec("video", args.video),
        engine,
        detector,
        Options(headless=True, max_frames=args.frame + 1),
        out=io.StringIO(),
        err=io.StringIO(),
        on_result=on_result,
    )
    mon.run()
    if not drawn:
        print(f"make_screen: the run ended before frame {args.frame}", file=sys.stderr)
        return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(args.out, title="mask-monitor --video samples/entrance.mp4")
    print(f"make_screen: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
