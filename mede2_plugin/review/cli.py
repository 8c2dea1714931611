"""``mede2 review RUN_DIR``: the review app for the human steps of the recipe."""

from __future__ import annotations

import argparse
import getpass
import shutil
import signal
import sys
from collections.abc import Callable


def _default_reviewer() -> str:
    from mede2_plugin.core.review_log import REVIEWER_NAME

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"
    return name if REVIEWER_NAME.match(name) else "reviewer"


def review_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 review runs/demo --reviewer alice``"""
    from mede2_plugin.review.app import ReviewSettings

    d = ReviewSettings()
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a `mede2 run` / `mede2 demo` output folder, or a stage output folder")
    parser.add_argument("--reviewer", default=None, help="reviewer name the page starts with (default: your user name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; the app has no login, so "
                             "anyone who reaches another address can read the run's texts and review)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (needs internet)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                        help="another folder whose images may be shown (repeatable; the run's input folders "
                             "from its manifest are allowed already)")
    parser.add_argument("--audit-size", type=int, default=d.audit_size,
                        help=f"judged candidates in the judge audit sample (default {d.audit_size})")
    parser.add_argument("--audit-seed", type=int, default=d.audit_seed, help=f"seed of the sample (default {d.audit_seed})")
    parser.add_argument("--agreement-min", type=int, default=d.agreement_min,
                        help=f"scored items before the agreement report shows (default {d.agreement_min})")

    def handler(args: argparse.Namespace) -> int:
        from mede2_plugin.core.review_log import check_reviewer
        from mede2_plugin.review.run import RunFiles
        from mede2_plugin.review.server import private_folder

        try:
            reviewer = check_reviewer(args.reviewer or _default_reviewer())
            if args.audit_size < 1 or args.agreement_min < 1:
                raise ValueError("--audit-size and --agreement-min must be >= 1")
            files = RunFiles(args.run_dir, args.data_dir)
        except (OSError, ValueError) as err:
            print(f"mede2 review: {err}", file=sys.stderr)
            return 2
        private = private_folder()  # before gradio is imported: its folders are set from the environment
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: the copies are removed
        try:
            try:
                import gradio  # noqa: F401
            except ImportError:
                print("mede2 review: needs gradio (it comes with LLaMA-Factory: "
                      "pip install 'mede2-plugin[llamafactory]')", file=sys.stderr)
                return 2
            from mede2_plugin.review.app import ReviewApp
            from mede2_plugin.review.server import launch
            from mede2_plugin.review.views import build_blocks

            try:
                app = ReviewApp(files, ReviewSettings(reviewer, args.audit_size, args.audit_seed, args.agreement_min),
                                private / "served")
            except (OSError, ValueError) as err:
                print(f"mede2 review: {err}", file=sys.stderr)
                return 2
            blocks = build_blocks(app)
            url = launch(blocks, host=args.host, port=args.port, share=args.share, open_browser=args.open)
            print(f"mede2 review: {len(app.rewrites)} rewrites, {len(app.sample)} of {len(app.judge_items)} judged "
                  f"candidates sampled, {len(app.pairs)} pairs, {len(app.funnel)} funnel steps", file=sys.stderr)
            print(f"mede2 review: reviews are saved in {files.review_dir}", file=sys.stderr)
            print(f"mede2 review: open {url}" + (f" (public: {blocks.share_url})" if args.share else ""), flush=True)
            blocks.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return 0

    return handler
