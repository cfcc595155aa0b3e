"""`argen serve`: the local web app (sample every method, watch the decode order)."""

from __future__ import annotations

import argparse
from typing import Any

from argen.catalog import SHIPPED


def add(commands: Any) -> None:
    serve = commands.add_parser("serve", help="a local web app: sample every method and watch the decode order")
    serve.add_argument(
        "--checkpoints",
        nargs="+",
        default=[],
        metavar="[NAME=]DIR",
        help="checkpoint sets like checkpoints/fmnist64 (every method found) or pipeline folders "
        "(default: the shipped checkpoints/fmnist64)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the server answers to besides its addresses and localhost (repeatable; "
        "behind a reverse proxy, the proxy's public name; * answers any name)",
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argen.serve.app import serve

    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    serve(args.checkpoints or [SHIPPED], args.host, args.port, tuple(args.allow_host))
    return 0
