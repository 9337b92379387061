"""The `sornmemory` console script: `serve`, `loadtest` and the `bench` harnesses.

Each harness lives in its own module under `webapp.bench` and exposes
`add_arguments(parser)` and `run(args) -> dict`; it may also expose
`format_report(result) -> str` for the human-readable (non `--json`) output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

# One BLAS thread per process: the engines are many small matrices, where threads only
# add overhead, and the worker processes already use every core.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

BENCHMARKS = {
    "engine": "webapp.bench.engine",
    "counting": "webapp.bench.counting",
    "selforg": "webapp.bench.selforg",
    "locomo": "webapp.bench.locomo",
    "recall": "webapp.bench.recall",
    "prompt": "webapp.bench.prompt",
    "users": "webapp.bench.users",
    "footprint": "webapp.bench.footprint",
    "turn": "webapp.bench.turn",
    "compare": "webapp.bench.compare",
}
LOADTEST = "webapp.bench.loadtest"


def _add_harness(commands, name: str, module_name: str, load: bool) -> None:
    """Register one harness; its module (numpy, matplotlib, ...) is imported only if `load`."""
    if not load:
        commands.add_parser(name)
        return
    module = importlib.import_module(module_name)
    sub = commands.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    module.add_arguments(sub)
    sub.set_defaults(module=module)


def _build_parser(selected: list[str]) -> argparse.ArgumentParser:
    """Build the parser; `selected` is the command path given, e.g. ["bench", "engine"]."""
    parser = argparse.ArgumentParser(prog="sornmemory", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))

    _add_harness(commands, "loadtest", LOADTEST, load=selected[:1] == ["loadtest"])

    bench = commands.add_parser("bench", help="benchmarks and experiments")
    benches = bench.add_subparsers(dest="bench", required=True)
    for name, module_name in BENCHMARKS.items():
        _add_harness(benches, name, module_name, load=selected == ["bench", name])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _build_parser(argv[:2]).parse_args(argv)
    if args.command == "serve":
        from webapp.web.server import serve

        serve(host=args.host, port=args.port)
        return 0
    result = args.module.run(args)
    if args.json or not hasattr(args.module, "format_report"):
        print(json.dumps(result, indent=None if args.json else 2))
    else:
        print(args.module.format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
