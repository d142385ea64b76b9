"""The `tollgate` command (also `python -m tollgate …`): helpers for run.sh and for operators."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tollgate.cli.words import plural

if TYPE_CHECKING:
    from tollgate.configuration.config import Config
    from tollgate.governance.policy.policy import Decision
    from tollgate.records.audit.audit_verify import Anchored


SERVE_USAGE = """usage: tollgate serve [--workers N|auto] [--config FILE] [mitmdump arguments…]

Runs Tollgate's proxy: one mitmdump (--workers 1, the default), or N mitmdump workers on loopback
ports behind HAProxy on the listen address (--listen-host, --listen-port; else TOLLGATE_LISTEN;
else 127.0.0.1:8080). auto: one worker per core. TOLLGATE_WORKERS gives --workers when it is not
on the command line. --config FILE names the configuration (--set tollgate_config=FILE). The other
arguments go to every worker (--set confdir=…). SIGTERM drains: no new connections, calls in flight finish, exit 0.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        # Its arguments are mitmdump's, which argparse would try to read.
        if argv[1:2] in (["-h"], ["--help"]):
            print(SERVE_USAGE, end="")
            return 0
        from tollgate.cli.supervisor import serve

        return serve(argv[1:])
    # Help and the version are answered from argparse alone: the proxy and the configuration's
    # models are imported by the command that needs them, not at every start.
    parser = argparse.ArgumentParser(prog="tollgate")
    parser.add_argument("--version", action="version", version=f"tollgate {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the proxy: one mitmdump, or --workers N behind HAProxy (see serve --help)")
    ca = commands.add_parser("certs", help="create the CA and certs/ca-bundle.pem if missing")
    ca.add_argument(
        "--confdir", type=Path,
        help="the directory of the CA (default: ./certs, but run from a checkout its certs/, the one ./run.sh"
        " uses)",
    )  # fmt: skip
    check = commands.add_parser("check", help="validate a configuration file (default: ./tollgate.yaml)")
    # --config as every command that reads a configuration takes it; the positional form stays an alias.
    check.add_argument("--config", dest="config_option", type=Path, metavar="FILE", help="default: ./tollgate.yaml")
    check.add_argument("config", type=Path, nargs="?", metavar="FILE", help="the same as --config FILE")
    policy = commands.add_parser("policy", help="work with Rego policies")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    evaluate = policy_commands.add_parser("eval", help="print the decision for a sample input, like `opa eval`")
    evaluate.add_argument("--policy", action="append", required=True, type=Path, help="a .rego file (repeatable)")
    evaluate.add_argument("--input", required=True, type=Path, help="the input document, JSON ('-': stdin)")
    evaluate.add_argument(
        "--kind",
        metavar="KIND",
        help="the kind of decision: call (data.tollgate.deny), mcp (data.tollgate.mcp.deny), egress"
        " (data.tollgate.egress.deny), tools (data.tollgate.tools.deny: a tool call in an answer);"
        " default: mcp for an input with an `mcp` object, tools for one with a `tool` object, else call",
    )
    evaluate.add_argument(
        "--egress",
        action="store_true",
        help="the input is a connection (client, auth, source, host, port, address, service), decided by"
        " data.tollgate.egress.deny as the proxy decides a CONNECT (as --kind egress)",
    )
    evaluate.add_argument(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        help="the evaluation's time limit, as policy.timeout in tollgate.yaml (default: policy.timeout's default)",
    )
    tests = policy_commands.add_parser(
        "test",
        help="run the Rego tests (rules named test_*) of .rego files, as `opa test` does, with the engine that"
        " decides calls",
    )
    tests.add_argument("paths", nargs="*", type=Path, default=[Path()], metavar="PATH", help="a file or a"
                       " directory searched for .rego files (default: the working directory)")  # fmt: skip
    tests.add_argument("-v", "--verbose", action="store_true", help="name every test, not only those that fail")
    tests.add_argument("-z", "--exit-zero-on-skipped", action="store_true", help="skipped tests return status 0")
    token = commands.add_parser(
        "token", help="print an HS256 token signed with the secret of an identity.jwt issuer, for a client"
    )
    token.add_argument("--client", required=True, help="the client claim (sub, or the issuer's client_claim)")
    token.add_argument("--groups", default="", help="comma-separated groups, e.g. a,b")
    token.add_argument("--ttl", default="1h", type=duration, help="lifetime: 90s, 30m, 1h, 7d (default: 1h)")
    token.add_argument("--config", default="tollgate.yaml", type=Path, help="default: %(default)s")
    token.add_argument("--issuer", help="the issuer whose secret signs (needed when several have one)")
    key = commands.add_parser("key", help="virtual keys for clients")
    key_commands = key.add_subparsers(dest="key_command", required=True)
    new_key = key_commands.add_parser(
        "new",
        help="print a new virtual key, and the sha256: line that puts it in tollgate.yaml",
        description="Prints a new virtual key for the client, and its entry for clients[].keys in tollgate.yaml:"
        " its SHA-256, so that the file holds no usable copy of the key. The key is shown only now.",
    )
    new_key.add_argument("--client", required=True, help="the client (clients[].name) the key is for")
    new_key.add_argument(
        "--expires", help="when it stops being accepted: a date (its start, UTC) or a date and time with its zone"
    )
    usage = commands.add_parser(
        "usage",
        help="requests, tokens and cost per client, group, model, … from the ledger or audit files",
        description="Sums the calls since --since per value of the --by keys, costliest first, with a total. A"
        " call in several groups counts once in each group's row when grouped by group; the total counts it"
        " once. Calls that used tokens but have no known price are counted as unpriced, their cost left out.",
    )
    usage.add_argument(
        "--config",
        type=Path,
        help="whose ledger.store to read (default: ./tollgate.yaml when present, else the built-in defaults)",
    )
    usage.add_argument("--store", metavar="URL", help="the ledger store to read instead: sqlite:///path, redis://…")
    usage.add_argument(
        "--since", default="7d", help="a span back from now (90s, 30m, 24h, 7d) or an ISO date or datetime, UTC"
        " (2026-11-01, 2026-11-01T08:00); default: %(default)s",
    )  # fmt: skip
    usage.add_argument(
        "--by", default="client,model", help="comma-separated keys: client, group, provider, requested_provider,"
        " model, endpoint, day, month, status, decision (UTC days and months); default: %(default)s",
    )  # fmt: skip
    usage.add_argument("--format", choices=("table", "json", "csv"), default="table", help="default: %(default)s")
    usage.add_argument(
        "--from-audit", nargs="+", type=Path, metavar="FILE", help="sum these audit files' calls, not the ledger's"
    )
    scan = commands.add_parser(
        "scan",
        help="what the guardrails would find in a request body or a saved answer: kinds and counts, never values",
        description="Reads a request body (JSON, or any text) and applies every guardrails rule of the"
        " configuration, whatever its match, and tollgate_keys (Tollgate's own keys). Prints each kind found,"
        " its count, the action the rules give it and the byte offsets where its matches begin; never a value."
        " With --answer, reads a saved answer (server-sent events or JSON) as the proxy reads the answers its"
        " clients get, by the rules on answer: each kind found, its count and action, and what the client"
        " would get (redacted, or cut where a value is denied).",
        epilog="exit status: 0 nothing found; 1 something found; 2 the body, the answer or the configuration"
        " cannot be read",
    )
    scan.add_argument("body", metavar="FILE", nargs="?", help="the request body ('-': standard input)")
    scan.add_argument(
        "--answer", metavar="FILE", help="a saved answer to read instead, as the proxy would ('-': standard input)"
    )
    scan.add_argument(
        "--format", dest="answer_format", metavar="NAME", help="the saved answer's format (openai-chat, mcp, …;"
        " default: told from its first message)",
    )  # fmt: skip
    scan.add_argument(
        "--config", type=Path, help="whose guardrails to apply (default: ./tollgate.yaml when present, else none)"
    )
    inventory = commands.add_parser(
        "inventory",
        help="who reached which AI service: governed calls, connections, refusals, bytes, first and last seen",
        description="Reads audit files and prints, per client and AI service, the governed calls let through"
        " (a provider Tollgate governs is a service named as the provider), the connections tunnelled to a"
        " catalogued AI service, what Tollgate refused (connections and calls; a refused host of no AI service"
        " is named by its host), the bytes each way (of the connections and the calls' bodies), and when each"
        " was first and last seen.",
    )
    inventory.add_argument(
        "files", nargs="*", type=Path, metavar="AUDIT", help="audit files, compressed rotations too (default: the"
        " configuration's audit.path and the rotations beside it)",
    )  # fmt: skip
    inventory.add_argument(
        "--config", type=Path, help="whose audit.path to read when no AUDIT is given (default: ./tollgate.yaml when"
        " present, else audit.jsonl)",
    )  # fmt: skip
    inventory.add_argument(
        "--since", help="only records from then on: a span back from now (90s, 30m, 24h, 7d) or an ISO date or"
        " datetime, UTC (2026-11-01, 2026-11-01T08:00); default: every record",
    )  # fmt: skip
    inventory.add_argument("--json", action="store_true", help="a JSON list of rows, not a table")
    audit = commands.add_parser("audit", help="work with audit files")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check that audit files are whole: every record's chain, every checkpoint's signature",
        description="Reads the files in the order given (every file since the instances began, oldest first,"
        " the chains running on across them) and checks each instance's chain of records, run after run, and"
        " with --key every checkpoint's signature and that every run is vouched for by one. Names each fault"
        " by file and line, never a record's values. A tail removed whole runs at a time shows only against a"
        " copy kept elsewhere (--against).",
        epilog="exit status: 0 whole; 1 a fault found (each on a line: FILE:LINE: what, or TABLE:ID: what); 2 a"
        " file, the table, the copy, the key or the anchors' CA file cannot be read",
    )
    verify.add_argument("files", nargs="*", metavar="FILE", help="audit files, oldest first")
    verify.add_argument(
        "--postgres", nargs="?", const=True, metavar="", help="check the fleet's table (audit.postgres) instead,"
        " going on from where the console or this command stopped (tollgate_verified); its DSN from --config"
        " (console.postgres_dsn, else audit.postgres.dsn) or TOLLGATE_RECORDS_DSN, never from the command line",
    )  # fmt: skip
    verify.add_argument("--dsn", help=argparse.SUPPRESS)  # refused: a DSN holds a password
    verify.add_argument("--config", type=Path, metavar="FILE", help="with --postgres: default ./tollgate.yaml")
    verify.add_argument("--key", type=Path, metavar="PUBLIC.pem", help="the Ed25519 public key that signs checkpoints")
    verify.add_argument(
        "--live", action="store_true", help="the files are still being written: a run not yet stopped is no fault"
    )
    verify.add_argument(
        "--against",
        metavar="COPY",
        help="a copy of the records kept elsewhere (a collector's OTLP JSON export, or audit lines): every"
        " checkpoint it holds must be in the files, which proves their tail",
    )
    verify.add_argument(
        "--anchors",
        metavar="CA_FILE",
        help="check every audit_anchor's RFC 3161 token against these roots (PEM): its signature and certificate"
        " chain as of its gen_time, its imprint against the checkpoint it names; every record (but checkpoints,"
        " anchors and gaps) must be covered by a token whose gen_time is within the window of its end, but those"
        " of its run's last window",
    )
    verify.add_argument(
        "--anchor-window",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="a record is anchored in time by a token that covers it whose gen_time is within this many seconds of"
        " its end (default 3600; an honest file passes when it exceeds every_s + checkpoint_s plus a minute)",
    )
    migrate = audit_commands.add_parser(
        "migrate",
        help="make or migrate the records' table in PostgreSQL (and tollgate reconcile's, tollgate_reconciliation)"
        " and backfill its sums, as the role that owns them",
        description="The DSN is the environment's TOLLGATE_RECORDS_DSN (the owner's, deploy/postgres-roles.sql);"
        " run at each upgrade before the instances; stopped, it goes on where it stopped (docs/fleet.md).",
    )
    migrate.add_argument("--table", default="tollgate_records", help="the table (audit.postgres.table)")
    console = commands.add_parser(
        "console", help="a read-only web console over the audit: live activity, people, spend, refusals, …",
        description="Serves the console over the audit files (default: the configuration's audit.path and its"
        " rotations), following them as they grow; prints its address with the token once (docs/console.md).",
    )  # fmt: skip
    console.add_argument("files", nargs="*", type=Path, metavar="AUDIT", help="audit files, oldest first")
    console.add_argument("--listen", metavar="HOST:PORT", help="default: console.listen, else 127.0.0.1:8090")
    console.add_argument("--config", type=Path, help="default: ./tollgate.yaml when present")
    reconcile = commands.add_parser(
        "reconcile",
        help="Tollgate's tokens and cost beside what the vendors' admin APIs bill, and the usage around Tollgate",
        description="Per provider, UTC day, vendor key and model: Tollgate's tokens beside the vendor's, both priced"
        " at Tollgate's prices; per day the coverage, the usage on keys Tollgate does not hold, and the vendor's own"
        " cost (docs/reconcile.md). A day that ended less than 48 hours ago is open: compared, never counted in the"
        " exit status. The results are kept in audit.postgres's database, else as a record of the local audit.",
        epilog="exit status: 0 every closed day matches and nothing closed was used around Tollgate; 1 otherwise;"
        " 2 a vendor, the configuration or Tollgate's records cannot be read",
    )
    reconcile.add_argument("--config", type=Path, help="default: ./tollgate.yaml")
    reconcile.add_argument("--since", metavar="DAY", help="the first UTC day (default: reconcile.days before --until)")
    reconcile.add_argument("--until", metavar="DAY", help="the last UTC day, included (default: today)")
    shown = reconcile.add_mutually_exclusive_group()
    shown.add_argument("--json", dest="reconcile_format", action="store_const", const="json", help='{"rows", "days"}')
    shown.add_argument(
        "--csv", dest="reconcile_format", action="store_const", const="csv", help="a line per row and day"
    )
    reconcile.add_argument(
        "--from", dest="source", choices=("auto", "postgres", "audit"), default="auto",
        help="Tollgate's side: postgres (required: exit 2 without audit.postgres, as a fleet's CronJob runs it),"
        " audit (the local audit file), auto (postgres when configured; default)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    if args.command == "certs":
        from tollgate.cli.certs_command import certs

        return certs(args.confdir)
    if args.command == "policy" and args.policy_command == "test":
        return test_policy(args.paths, args.verbose, args.exit_zero_on_skipped)
    if args.command == "policy":
        return evaluate_policy(args.policy, args.input, args.timeout, "egress" if args.egress else args.kind)
    if args.command == "token":
        return print_token(args.config, args.client, args.groups, args.ttl, args.issuer)
    if args.command == "key":
        return print_new_key(args.client, args.expires)
    if args.command == "scan" and args.answer is not None:
        if args.body is not None:
            scan.error("give a request body or --answer, not both")
        from tollgate.cli.answer_scan import scan_answer

        return scan_answer(args.answer, args.answer_format, args.config)
    if args.command == "scan":
        if args.body is None or args.answer_format is not None:
            scan.error("give a request body (FILE or -), or --answer FILE [--format NAME]")
        from tollgate.cli.scan import scan_body

        return scan_body(args.body, args.config)
    if args.command == "audit" and args.audit_command == "migrate":
        from tollgate.records.senders.records_migration import run as migrate_records

        return migrate_records(args.table)
    if args.command == "audit":
        if args.postgres is not None or args.dsn is not None or args.config is not None:
            from tollgate.cli.audit_table import REFUSED, looks_like_dsn

            given = [args.dsn, args.postgres if isinstance(args.postgres, str) else None, *args.files]
            if any(isinstance(g, str) and looks_like_dsn(g) for g in given):
                print(REFUSED, file=sys.stderr)
                return 2
            if args.postgres is not True or args.files or args.against is not None:
                verify.error("give audit files, or --postgres [--config FILE] (no files, no --against)")
        elif not args.files:
            verify.error("give audit files (oldest first, e.g. audit.jsonl), or --postgres")
        return verify_audit(args.files, args.key, args.live, args.against, args.anchors, args.anchor_window,
                            postgres=args.postgres is True, config=args.config)  # fmt: skip
    if args.command == "console":
        from tollgate.console.command import run as run_console

        return run_console(args.files, args.listen, args.config)
    if args.command == "inventory":
        from tollgate.cli.reports import print_inventory

        return print_inventory(args.files, args.config, args.since, args.json)
    if args.command == "reconcile":
        from tollgate.cli.reconcile_command import reconcile as run_reconcile

        return run_reconcile(args.config, args.since, args.until, args.reconcile_format or "table", args.source)
    if args.command == "usage":
        from tollgate.cli.reports import print_usage

        return print_usage(args.config, args.store, args.since, args.by, args.format, args.from_audit)
    if args.config is not None and args.config_option is not None:
        parser.error("check: give the configuration once: --config FILE or FILE")
    return check_config(args.config_option or args.config or Path("tollgate.yaml"))


def installed_version() -> str:
    """Tollgate's version as installed (pyproject's), or "unknown" when it runs from a checkout
    that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tollgate")
    except PackageNotFoundError:
        return "unknown"


def verify_audit(
    files: list[str],
    key_path: Path | None,
    live: bool,
    against: str | None = None,
    anchors_file: str | None = None,
    anchor_window: float = 3600.0,
    postgres: bool = False,
    config: Path | None = None,
) -> int:
    """Exit status 0 when the files are whole (a summary printed), 1 with a line per fault, 2 when a
    file, the copy, the key or the anchors' CA file cannot be read. `postgres`: the fleet's table
    instead (`audit_table`), found by the configuration `config`."""
    from tollgate.common.audit_chain import load_public_key
    from tollgate.records.audit.anchor_verify import load_rules
    from tollgate.records.audit.audit_verify import read_copy, read_lines, verify, writers

    key = None
    if key_path is not None:
        try:
            key = load_public_key(key_path)
        except ValueError as e:
            print(f"error: --key: {e}", file=sys.stderr)
            return 2
    rules = None
    if not anchor_window > 0:  # NaN too
        print(f"error: --anchor-window: must be more than 0 seconds, not {anchor_window:g}", file=sys.stderr)
        return 2
    if anchors_file is not None:
        try:
            rules = load_rules(anchors_file, anchor_window)
        except ValueError as e:
            print(f"error: --anchors: {e}", file=sys.stderr)
            return 2
    elif anchor_window != 3600.0 and not postgres:
        print("error: --anchor-window is the window of --anchors: give --anchors CA_FILE", file=sys.stderr)
        return 2
    if postgres:
        from tollgate.cli.audit_table import verify_postgres

        return verify_postgres(config, key, rules, anchor_window)
    try:
        copy = () if against is None else read_copy(against)
        verdict = verify(read_lines(files, live), key, live, copy, rules)
    except OSError as e:
        print(f"error: {e.filename}: cannot read: {e.strerror}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: --against: {e}", file=sys.stderr)
        return 2
    for fault in verdict.faults:
        print(fault)
    for part in verdict.before_key:  # written before the key was set: said apart, not a fault
        print(f"before the key: {part}")
    for instance, anchored in verdict.anchored.items():
        print(anchored_line(instance, anchored))
        if anchored.gaps:
            gap = anchored.last_gap
            print(f"anchor gaps: {instance}: {plural(anchored.gaps, 'anchor_gap record')}, the last at"
                  f" {gap.place if gap else '-'} ({gap.tsa if gap else '-'}: {gap.error if gap else '-'})")  # fmt: skip
    s = verdict.summary
    signatures = (
        f"{plural(s.signed, 'signature')} verified" if key is not None
        else f"signatures not checked (no --key; {s.unchecked_signatures} signed)"
    )  # fmt: skip
    anchors: tuple[str, ...] = ()
    if rules is not None:
        anchors = (f"{plural(s.anchors, 'anchor')} verified",)
    elif s.anchors:
        anchors = (f"anchors not checked (no --anchors; {plural(s.anchors, 'anchor')})",)
    counts = ", ".join(
        (plural(s.records, "record"), plural(s.instances, "instance"), plural(s.runs, "run"),
         plural(s.checkpoints, "checkpoint"), signatures, *anchors)
    )  # fmt: skip
    if verdict.faults:
        print(f"{plural(len(verdict.faults), 'fault')} in {counts}", file=sys.stderr)
        if not live and (running := writers(files[-1])):
            print(f"{files[-1]} is still being written (Tollgate runs beside it: instance {', '.join(running)}):"
                  " verify it with --live, which takes a run not yet stopped as no fault", file=sys.stderr)  # fmt: skip
        return 1
    print(f"whole: {counts}")
    if against is not None:
        held = "is" if s.copy_checkpoints == 1 else "are all"
        print(f"the copy's {plural(s.copy_checkpoints, 'checkpoint')} {held} in the files")
    print(f"last record: {s.last_ts or '-'}; last signed checkpoint: {s.last_signed_ts or '-'}")
    return 0


def anchored_line(instance: str, anchored: Anchored) -> str:
    """Up to which record an instance is anchored, by which TSAs and when, and what follows."""
    after = f"{plural(anchored.after, 'record')} after it not anchored yet" if anchored.after else "nothing after it"
    if anchored.run is None:
        return f"not anchored: {instance}: no token ({plural(anchored.after, 'record')} not anchored yet)"
    by = ", ".join(f"{s.tsa} at {s.gen_time}" for s in anchored.stamps)
    run = f"seq {anchored.seq} of its run of {anchored.run} ({anchored.record})"
    return f"anchored: {instance} to {run}, by {by}; {after}"


def check_config(path: Path) -> int:
    """Exit status 0 when the configuration and the policy it names would load, else 1 with every
    problem found, each on a line (unset variables among them)."""
    from tollgate.configuration.config import ConfigError, file_problems, file_warnings, load_config
    from tollgate.governance.policy.policy import Policy, PolicyError

    problems = file_problems(path)
    for warning in file_warnings(path):
        print(f"warning: {warning}", file=sys.stderr)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    try:
        config = load_config(path)
        if config.policy.rego:
            Policy(config.policy.rego, config.policy.timeout, network=config.policy.network == "allow")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except PolicyError as e:
        print(f"error: {path}: policy.rego: {e}", file=sys.stderr)
        return 1
    for warning in email_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    policy = f", a policy of {plural(len(config.policy.rego), 'file')}" if config.policy.rego else ""
    print(f"{path}: ok ({plural(len(config.clients), 'client')}{policy})")
    return 0


def email_warnings(config: Config) -> list[str]:
    """The configured e-mails with a capital outside ASCII: they matched their small letter while
    e-mails were folded with Unicode's rules, and match only themselves now (`common.emails`);
    and people's e-mails that sign-in refuses, as Unicode NFKC changes them."""
    warnings = []
    for n, client in enumerate(config.clients):
        for field, addresses in (("people", client.people), ("accounts", client.accounts)):
            for i, address in enumerate(addresses):
                if "@" in address:
                    warning = _email_warning(address, field == "people")
                    if warning:
                        warnings.append(f"clients.{n}.{field}.{i}: {address!r} {warning}")
    return warnings


def _email_warning(address: str, person: bool) -> str | None:
    from tollgate.common.emails import changed_by_nfkc, non_ascii_capitals

    capitals, changed = non_ascii_capitals(address), changed_by_nfkc(address) if person else []
    refused = "sign-in refuses an e-mail that Unicode NFKC changes"
    if capitals:
        also = f"; {refused}" if changed else ""
        return (f"has a capital outside ASCII ({', '.join(capitals)}): e-mails compare in ASCII case only, so it"
                f" matches only an address written with that very letter{also}")  # fmt: skip
    if changed:
        return f"holds characters Unicode NFKC changes ({', '.join(changed)}): {refused}, so no one signs in as it"
    return None


def test_policy(paths: list[Path], verbose: bool, zero_on_skipped: bool) -> int:
    """Exit status 0 when every test passes, 2 when one does not, 1 when the files do not compile
    (as `opa test`) or hold no test (as `opa test --fail-on-empty`: a run that tested nothing
    passes nothing)."""
    from tollgate.governance.policy.policy import PolicyError
    from tollgate.governance.policy.policy_lint import unguarded_model_reads
    from tollgate.governance.policy.policy_tests import PASS, SKIPPED, rego_files, report, run_tests

    try:
        files = rego_files(paths)
        results = run_tests(files)
    except PolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in files:  # read already: run_tests would have said otherwise
        for unguarded in unguarded_model_reads(str(path), path.read_text(encoding="utf-8")):
            print(f"warning: {unguarded}", file=sys.stderr)
    if not results:
        where = ", ".join(str(p) for p in paths)
        n = len(files)
        found = (
            f"no test_ or todo_test_ rule in the {n} .rego {'file' if n == 1 else 'files'}" if n else "no .rego file"
        )
        print(f"error: no tests were run: {found} under {where}", file=sys.stderr)
        return 1
    print(report(results, verbose))
    allowed = (PASS, SKIPPED) if zero_on_skipped else (PASS,)
    return 0 if all(r.outcome in allowed for r in results) else 2


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """90s, 30m, 1h, 7d, or plain seconds."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
    seconds = float(number) * _UNITS[unit]
    if not seconds > 0:
        raise ValueError(text)
    return timedelta(seconds=seconds)


def print_token(config_path: Path, client: str, groups: str, ttl: timedelta, issuer: str | None) -> int:
    """Exit status 0 with the token on standard output; 1 when no issuer can sign one."""
    from tollgate.configuration.config import ConfigError, load_config
    from tollgate.governance.identity.jwt_identity import mint

    try:
        config = load_config(config_path, unset=[])  # the providers' secrets are not needed
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    signers = [i for i in config.identity.jwt if i.secret is not None]
    if issuer is not None:
        signers = [i for i in signers if i.issuer == issuer]
    if not signers:
        which = f"issuer {issuer} with" if issuer else "issuer with"
        print(
            f"error: {config_path}: no identity.jwt {which} a secret; `tollgate token` signs with one"
            ' (secret: "${TOLLGATE_JWT_SECRET}", algorithms: [HS256])',
            file=sys.stderr,
        )
        return 1
    if len(signers) > 1:
        names = ", ".join(i.issuer for i in signers)
        print(f"error: {config_path}: several issuers have a secret ({names}); name one with --issuer", file=sys.stderr)
        return 1
    if not client:
        print("error: --client is empty", file=sys.stderr)
        return 1
    print(mint(signers[0], client, [g.strip() for g in groups.split(",") if g.strip()], ttl))
    return 0


# A new virtual key: recognisable by its prefix (as the docs' examples), then 256 random bits.
KEY_PREFIX = "tg-"
KEY_BYTES = 32


def new_virtual_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def print_new_key(client: str, expires: str | None) -> int:
    """Exit status 0 with two lines on standard output, a new key and its entry for the client's
    `keys` in tollgate.yaml (what to do with them on standard error); 2 for a bad argument."""
    from pydantic import ValidationError

    from tollgate.governance.identity.clients import SHA256_KEY_PREFIX, VirtualKey, key_digest

    name = client.strip()
    if not name:
        print("error: --client is empty", file=sys.stderr)
        return 2
    key = new_virtual_key()
    hashed = SHA256_KEY_PREFIX + key_digest(key)
    try:  # read as the configuration reads it: a bad --expires is told as the file's would be
        entry = VirtualKey.model_validate({"key": hashed, "expires": expires})
    except ValidationError as e:
        print(f"error: --expires: {e.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    written = json.dumps(hashed)
    if entry.expires is not None:
        written = f"{{key: {written}, expires: {entry.expires.strftime('%Y-%m-%dT%H:%M:%SZ')}}}"
    print(key)
    print(written)
    sys.stdout.flush()
    yaml_name = name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@/-]*", name) else json.dumps(name)
    print(
        f"The first line is a new virtual key for {name}: give it to them, it is not shown again.\n"
        "The second is its entry in tollgate.yaml, which holds the key's SHA-256 and no usable copy of it:"
        f" one of {name}'s keys,\n\n  clients:\n    - name: {yaml_name}\n      keys: [{written}]",
        file=sys.stderr,
    )
    return 0


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def evaluate_policy(
    files: list[Path], input_path: Path, timeout: float | None = None, kind_name: str | None = None
) -> int:
    """Exit status 0 when the input is allowed, 1 when denied, 2 when the policy or input is broken.
    The policy is compiled here, and evaluated in a worker process within the time limit, as the
    proxy does. The input is decided as the proxy decides a request of `kind_name` (one of the
    policy's `KINDS`); without one, an input with an `mcp` object is an MCP server's request
    (`data.tollgate.mcp.deny`), one with a `tool` object a tool call in an answer
    (`data.tollgate.tools.deny`), any other an LLM call (`data.tollgate.deny`)."""
    from tollgate.governance.policy.policy import (
        CALL_DECISION,
        KINDS,
        MCP_DECISION,
        TIMEOUT,
        TOOLS_DECISION,
        Decision,
        Policy,
        PolicyError,
        lacking,
        paths_read,
        whole,
    )

    by_name = {k.name: k for k in KINDS}
    if kind_name is not None and kind_name not in by_name:
        print(f"error: --kind {kind_name}: no such kind of decision (kinds: {', '.join(by_name)})", file=sys.stderr)
        return 2
    try:
        text = sys.stdin.read() if str(input_path) == "-" else input_path.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, ValueError) as e:
        print(f"error: {input_path}: {e}", file=sys.stderr)
        return 2
    try:
        policy = Policy(files, TIMEOUT if timeout is None else timeout)
    except PolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if kind_name is not None:
        kind = by_name[kind_name]
    else:
        mcp = isinstance(document, dict) and isinstance(document.get("mcp"), dict)
        tool = isinstance(document, dict) and isinstance(document.get("tool"), dict)
        kind = MCP_DECISION if mcp else TOOLS_DECISION if tool else CALL_DECISION
    # What the proxy gives the requests of the other kinds is not lacking here.
    read = paths_read(policy.sources.values()) or ()
    missing = [p for p in lacking(document, read) if kind.gives(p.partition(".")[0])]
    if missing:
        # Undefined in Rego: a rule that reads one does not hold, as it would for a real request.
        print(
            f"warning: {input_path} lacks what the policy reads: {', '.join(missing)}; the proxy gives every"
            f" {_REQUEST_OF_KIND.get(kind.name, kind.name + ' request')} these (rules that read them do not hold here)",
            file=sys.stderr,
        )

    async def in_worker() -> Decision:
        try:
            decision = policy.decide(whole(kind), document)
            return decision if isinstance(decision, Decision) else await decision
        finally:
            await policy.aclose()

    decision = asyncio.run(in_worker())
    result = {"allowed": decision.allowed, "deny": list(decision.deny_reasons)}
    if decision.error:
        result["error"] = decision.error
    print(json.dumps(result, indent=2))
    return 0 if decision.allowed else 1


# How the warning names a request of each built-in kind.
_REQUEST_OF_KIND = {"call": "call", "mcp": "MCP request", "egress": "connection", "tools": "tool call"}


if __name__ == "__main__":
    sys.exit(main())
