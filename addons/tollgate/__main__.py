"""`python -m tollgate …`: helpers for run.sh and for operators."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate")
    commands = parser.add_subparsers(dest="command", required=True)
    ca = commands.add_parser("certs", help="create the CA and certs/ca-bundle.pem if missing")
    ca.add_argument("--confdir", default="certs", type=Path)
    check = commands.add_parser("check", help="validate a configuration file")
    check.add_argument("config", type=Path)
    args = parser.parse_args(argv)

    if args.command == "certs":
        from .certs import ensure_bundle, ensure_ca

        print(ensure_ca(args.confdir).resolve())
        print(ensure_bundle(args.confdir).resolve())
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.config}: ok ({len(config.clients)} clients)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
