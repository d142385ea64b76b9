"""The `tollgate` command (also `python -m tollgate …`): helpers for run.sh and for operators."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, load_config
from .policy import TIMEOUT as POLICY_TIMEOUT

if TYPE_CHECKING:
    from .policy import Decision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tollgate")
    commands = parser.add_subparsers(dest="command", required=True)
    ca = commands.add_parser("certs", help="create the CA and certs/ca-bundle.pem if missing")
    ca.add_argument("--confdir", default="certs", type=Path)
    check = commands.add_parser("check", help="validate a configuration file")
    check.add_argument("config", type=Path)
    policy = commands.add_parser("policy", help="work with Rego policies")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    evaluate = policy_commands.add_parser("eval", help="print the decision for a sample input, like `opa eval`")
    evaluate.add_argument("--policy", action="append", required=True, type=Path, help="a .rego file (repeatable)")
    evaluate.add_argument("--input", required=True, type=Path, help="the input document, JSON ('-': stdin)")
    evaluate.add_argument(
        "--timeout",
        type=positive,
        default=POLICY_TIMEOUT,
        metavar="SECONDS",
        help="the evaluation's time limit, as policy.timeout in tollgate.yaml (default: %(default)g)",
    )
    args = parser.parse_args(argv)

    if args.command == "certs":
        from .certs import ensure_bundle, ensure_ca

        print(ensure_ca(args.confdir).resolve())
        print(ensure_bundle(args.confdir).resolve())
        return 0
    if args.command == "policy":
        return evaluate_policy(args.policy, args.input, args.timeout)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.config}: ok ({len(config.clients)} clients)")
    return 0


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def evaluate_policy(files: list[Path], input_path: Path, timeout: float = POLICY_TIMEOUT) -> int:
    """Exit status 0 when the input is allowed, 1 when denied, 2 when the policy or input is broken.
    The policy is compiled here, and evaluated in a worker process within the time limit, as the
    proxy does."""
    from .policy import Policy, PolicyError

    try:
        text = sys.stdin.read() if str(input_path) == "-" else input_path.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, ValueError) as e:
        print(f"error: {input_path}: {e}", file=sys.stderr)
        return 2
    try:
        policy = Policy(files, timeout)
    except PolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def in_worker() -> Decision:
        try:
            return await policy.decide_in_worker(document)
        finally:
            await policy.aclose()

    decision = asyncio.run(in_worker())
    result = {"allowed": decision.allowed, "deny": list(decision.deny_reasons)}
    if decision.error:
        result["error"] = decision.error
    print(json.dumps(result, indent=2))
    return 0 if decision.allowed else 1


if __name__ == "__main__":
    sys.exit(main())
