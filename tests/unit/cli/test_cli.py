"""The `tollgate` command as pyproject.toml declares it: its entry point, run from any directory."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from tollgate.cli import certs_command as tollgate_certs
from tollgate.cli.certs_command import checkout_certs
from tollgate.configuration.config import load_config
from tollgate.governance.identity.clients import Directory, KnownCaller
from tollgate.providers.credentials import Presented

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples" / "policies"


@pytest.fixture
def tollgate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The function the installed `tollgate` script calls, run in a directory far from the checkout."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    entry = EntryPoint(name="tollgate", value=scripts["tollgate"], group="console_scripts").load()
    monkeypatch.chdir(tmp_path)
    return entry


def test_check_from_another_directory(tollgate, tmp_path: Path, capsys) -> None:
    Path("tollgate.yaml").write_text("clients: [{name: alice, keys: [tg-alice-0123456789]}]\n")
    Path("bad.yaml").write_text("providers: {openai: {keyz: []}}\n")
    assert tollgate(["check", "tollgate.yaml"]) == 0
    assert capsys.readouterr().out == "tollgate.yaml: ok (1 client)\n"
    assert tollgate(["check", "bad.yaml"]) == 1
    assert "providers.openai.keyz: unknown key" in capsys.readouterr().err
    Path("guarded.yaml").write_text("guardrails: [{detect: [secrets], action: deny}]\n")
    assert tollgate(["check", "guarded.yaml"]) == 0


def test_check_warns_of_an_e_mail_with_a_capital_outside_ascii(tollgate, tmp_path: Path, capsys) -> None:
    """E-mails compare in ASCII case only: `\u212aate@` (KELVIN SIGN) once matched kate@ and now
    matches only itself, as a plan account and as a person signing in."""
    Path("tollgate.yaml").write_text(
        'clients:\n  - {name: kate, people: ["\u212aate@example.com", "Kate@Example.com", "\uff4bate@example.com"],'
        ' accounts: ["\u00c9lodie@example.com", "acct-\u00c9"]}\n',
        encoding="utf-8",
    )
    assert tollgate(["check", "tollgate.yaml"]) == 0
    said = capsys.readouterr()
    assert said.out == "tollgate.yaml: ok (1 client)\n"
    assert said.err.splitlines() == [
        "warning: clients.0.people.0: '\u212aate@example.com' has a capital outside ASCII (U+212A): e-mails"
        " compare in ASCII case only, so it matches only an address written with that very letter;"
        " sign-in refuses an e-mail that Unicode NFKC changes",
        "warning: clients.0.people.2: '\uff4bate@example.com' holds characters Unicode NFKC changes (U+FF4B):"
        " sign-in refuses an e-mail that Unicode NFKC changes, so no one signs in as it",
        "warning: clients.0.accounts.0: '\u00c9lodie@example.com' has a capital outside ASCII (U+00C9): e-mails"
        " compare in ASCII case only, so it matches only an address written with that very letter",
    ]
    directory = Directory(load_config("tollgate.yaml"))
    assert directory.account_holder("\u00e9lodie@example.com") is None
    assert directory.account_holder("\u00c9LODIE@EXAMPLE.COM") == KnownCaller("kate", (), "subscription")
    Path("k.yaml").write_text('clients: [{name: kate, accounts: ["kate@example.com"]}]\n')
    assert Directory(load_config("k.yaml")).account_holder("\u212aATE@example.com") is None


def test_check_reads_tollgate_yaml_by_default(tollgate, tmp_path: Path, capsys) -> None:
    Path("tollgate.yaml").write_text("clients: [{name: alice, keys: [tg-alice-0123456789]}, {name: bob}]\n")
    assert tollgate(["check"]) == 0
    assert capsys.readouterr().out == "tollgate.yaml: ok (2 clients)\n"


def test_version(tollgate, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        tollgate(["--version"])
    assert done.value.code == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert capsys.readouterr().out == f"tollgate {version}\n"


@pytest.mark.slow
def test_help_and_version_import_neither_the_proxy_nor_the_configuration() -> None:
    """`tollgate --help` answers from argparse alone: what the commands need is imported by them."""
    probe = (
        "import contextlib, io, sys\n"
        "from tollgate.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['check', '--help'], ['scan', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('tollgate', 'mitmproxy', 'pydantic'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "addons")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tollgate", "tollgate.cli", "tollgate.cli.main", "tollgate.cli.words"]


def test_check_refuses_a_client_given_a_providers_real_key(tollgate, tmp_path: Path, capsys) -> None:
    Path("tollgate.yaml").write_text(
        "providers: {openai: {keys: [sk-REAL-check-42]}}\nclients: [{name: alice, keys: [sk-REAL-check-42]}]\n"
    )
    assert tollgate(["check", "tollgate.yaml"]) == 1
    said = capsys.readouterr()
    assert "clients.0.keys.0: client 'alice' is given providers.openai.keys.0, a real key" in said.err
    assert "sk-REAL-check-42" not in said.out + said.err


@pytest.mark.slow
def test_policy_eval_and_certs_from_another_directory(tollgate, tmp_path: Path, capsys) -> None:
    Path("input.json").write_text(
        json.dumps({"client": {"name": "sam", "groups": ["support"]}, "model": "gpt-4o", "unread": []})
    )
    code = tollgate(["policy", "eval", "--policy", str(EXAMPLES / "model_allowlist.rego"), "--input", "input.json"])
    assert (code, json.loads(capsys.readouterr().out)) == (
        1,
        {"allowed": False, "deny": ['model gpt-4o is not allowed for groups ["support"]']},
    )
    assert tollgate(["certs", "--confdir", "here"]) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "here" / "mitmproxy-ca-cert.pem"),
        str(tmp_path / "here" / "ca-bundle.pem"),
    ]


JWT_SECRET = "cli-secret-" + "z" * 32


def test_token_signs_with_the_issuer_that_has_a_secret(tollgate, tmp_path: Path, capsys, monkeypatch) -> None:
    import jwt

    from tollgate.configuration.config import load_config
    from tollgate.governance.identity.jwt_identity import Verifier

    monkeypatch.setenv("TOLLGATE_JWT_SECRET", JWT_SECRET)
    Path("tollgate.yaml").write_text(
        "identity:\n  jwt:\n"
        "    - {issuer: 'https://oidc.example', audience: x, algorithms: [RS256], jwks_url: 'https://oidc.example/k'}\n"
        "    - issuer: https://tollgate.local\n"
        "      audience: [tollgate, other]\n"
        '      secret: "${TOLLGATE_JWT_SECRET}"\n'
        "      algorithms: [HS256]\n"
        "      client_claim: client\n"
        "      groups_claim: roles\n"
    )
    assert tollgate(["token", "--client", "batch", "--groups", "etl, nightly", "--ttl", "30m"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="tollgate", issuer="https://tollgate.local")
    assert (claims["client"], claims["roles"], claims["exp"] - claims["iat"]) == ("batch", ["etl", "nightly"], 1800)
    identity = Verifier(load_config("tollgate.yaml").identity.jwt).verify(token)
    assert identity.client == "batch"  # type: ignore[union-attr]
    assert JWT_SECRET not in token


def test_token_without_an_issuer_that_can_sign(tollgate, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TOLLGATE_JWT_SECRET", JWT_SECRET)
    Path("none.yaml").write_text("clients: []\n")
    assert tollgate(["token", "--client", "a", "--config", "none.yaml"]) == 1
    assert "no identity.jwt issuer with a secret" in capsys.readouterr().err
    issuer = "{{issuer: '{}', audience: t, algorithms: [HS256], secret: '${{TOLLGATE_JWT_SECRET}}'}}"
    Path("two.yaml").write_text(
        f"identity:\n  jwt:\n    - {issuer.format('https://a')}\n    - {issuer.format('https://b')}\n"
    )
    assert tollgate(["token", "--client", "a", "--config", "two.yaml"]) == 1
    assert "name one with --issuer" in capsys.readouterr().err
    assert tollgate(["token", "--client", "a", "--config", "two.yaml", "--issuer", "https://b"]) == 0
    assert capsys.readouterr().out.count(".") == 2
    assert tollgate(["token", "--client", "a", "--config", "two.yaml", "--issuer", "https://c"]) == 1
    assert "no identity.jwt issuer https://c with a secret" in capsys.readouterr().err


def test_key_new_prints_a_key_and_the_entry_that_lets_it_in(tollgate, tmp_path: Path, capsys) -> None:
    assert tollgate(["key", "new", "--client", "alice"]) == 0
    out, err = capsys.readouterr()
    key, entry = out.splitlines()
    assert re.fullmatch(r"tg-[A-Za-z0-9_-]{43}", key)  # 256 random bits after a recognisable prefix
    assert entry == json.dumps("sha256:" + hashlib.sha256(key.encode()).hexdigest())
    assert key not in err and f"- name: alice\n      keys: [{entry}]" in err
    # Pasted as the explanation shows, it lets that key in, and the file holds no usable copy of it.
    Path("tollgate.yaml").write_text(f"clients:\n  - name: alice\n    keys: [{entry}]\n")
    assert tollgate(["check", "tollgate.yaml"]) == 0
    assert key not in Path("tollgate.yaml").read_text()
    directory = Directory(load_config("tollgate.yaml"))
    assert directory.identify(None, [Presented(key, "authorization")]) == KnownCaller("alice", (), "virtual_key")
    # Each key is new.
    assert tollgate(["key", "new", "--client", "alice"]) == 0
    assert capsys.readouterr().out.splitlines()[0] != key


def test_key_new_with_an_expiry(tollgate, tmp_path: Path, capsys) -> None:
    assert tollgate(["key", "new", "--client", "ci bot", "--expires", "2027-03-01"]) == 0
    out, err = capsys.readouterr()
    key, entry = out.splitlines()
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert entry == f'{{key: "sha256:{digest}", expires: 2027-03-01T00:00:00Z}}'
    assert f'- name: "ci bot"\n      keys: [{entry}]' in err
    Path("tollgate.yaml").write_text(f'clients:\n  - name: "ci bot"\n    keys: [{entry}]\n')
    (written,) = load_config("tollgate.yaml").clients[0].keys
    assert (written.sha256, written.expires) == (digest, datetime(2027, 3, 1, tzinfo=UTC))
    assert tollgate(["key", "new", "--client", "ci", "--expires", "2027-03-01T10:00:00+01:00"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("expires: 2027-03-01T09:00:00Z}")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--client", "ci", "--expires", "2027-03-01T10:00"], "error: --expires: a date and time needs its zone"),
        (["--client", "ci", "--expires", "soon"], "error: --expires: 'soon' is no date"),
        (["--client", " "], "error: --client is empty"),
    ],
)
def test_key_new_refuses_what_the_file_would_refuse(tollgate, capsys, args: list[str], said: str) -> None:
    assert tollgate(["key", "new", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(said)


# --- read-only commands on a machine without the providers' secrets ---------------------------------

UNSET_KEYS = """\
providers:
  openai: {keys: ["${TOLLGATE_TEST_UNSET_OPENAI}"]}
  bedrock: {credentials: {access_key_id: AKIATOLLGATEREADONLY, secret_access_key: "${TOLLGATE_TEST_UNSET_AWS}"}}
mcp:
  servers: [{name: notes, url: "https://notes.example.com/mcp", credential: {bearer: "${TOLLGATE_TEST_UNSET_MCP}"}}]
clients: [{name: alice, keys: [tg-alice-readonly-0123456789]}]
"""


@pytest.fixture
def secrets_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOLLGATE_TEST_UNSET_OPENAI", "TOLLGATE_TEST_UNSET_AWS", "TOLLGATE_TEST_UNSET_MCP"):
        monkeypatch.delenv(name, raising=False)


def test_usage_inventory_and_verify_read_without_the_providers_secrets(
    tollgate, tmp_path: Path, capsys, secrets_unset
) -> None:
    Path("tollgate.yaml").write_text(UNSET_KEYS + "audit: {path: audit.jsonl}\n")
    record = {"event": "llm_call", "ts": "2026-11-22T04:10:55.062Z", "client": "alice", "provider": "openai"}
    Path("audit.jsonl").write_text(json.dumps({**record, "model": "gpt-4o-mini", "status": 200}) + "\n")
    Path("ledger.sqlite").touch()  # where the configuration's ledger is: the usage report resolves it
    assert tollgate(["usage", "--since", "3650d"]) == 0, capsys.readouterr().err
    assert tollgate(["inventory", "--json"]) == 0, capsys.readouterr().err
    said = capsys.readouterr()
    assert "is not set" not in said.err


def test_usage_still_resolves_the_ledger_store_it_reads(tollgate, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TOLLGATE_TEST_UNSET_REDIS", raising=False)
    Path("tollgate.yaml").write_text('ledger: {store: "${TOLLGATE_TEST_UNSET_REDIS}"}\n')
    assert tollgate(["usage"]) == 1
    assert capsys.readouterr().err == (
        "error: tollgate.yaml: ledger.store: environment variable TOLLGATE_TEST_UNSET_REDIS is not set\n"
    )


def test_scan_says_which_of_tollgates_keys_it_could_not_look_for(tollgate, tmp_path: Path, capsys, secrets_unset):
    Path("tollgate.yaml").write_text(UNSET_KEYS)
    Path("body.json").write_text('{"messages": [{"role": "user", "content": "tg-alice-readonly-0123456789"}]}')
    assert tollgate(["scan", "body.json"]) == 1
    said = capsys.readouterr()
    assert said.err == (
        "applied: tollgate.yaml: no guardrails rule, 1 key of Tollgate's own (tollgate_keys); not looked for, their"
        " variables unset: providers.openai.keys.0 (${TOLLGATE_TEST_UNSET_OPENAI}),"
        " providers.bedrock.credentials.secret_access_key (${TOLLGATE_TEST_UNSET_AWS}),"
        " mcp.servers.0.credential.bearer (${TOLLGATE_TEST_UNSET_MCP})\n"
    )
    assert said.out.splitlines()[1].split()[:2] == ["tollgate_keys", "1"]
    Path("body.json").write_text('{"messages": [{"role": "user", "content": "${TOLLGATE_TEST_UNSET_OPENAI}"}]}')
    assert tollgate(["scan", "body.json"]) == 0  # the name of an unset variable is no key


def test_check_reports_every_problem_at_once_unset_variables_among_them(
    tollgate, tmp_path: Path, capsys, secrets_unset
) -> None:
    Path("tollgate.yaml").write_text(
        UNSET_KEYS.replace("clients: [{name: alice,", "clients: [{grups: [x], name: alice,")
        + 'audit: {checkpoint_s: "${TOLLGATE_TEST_UNSET_OPENAI}"}\n'
    )
    assert tollgate(["check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: tollgate.yaml: providers.openai.keys.0: environment variable TOLLGATE_TEST_UNSET_OPENAI is not set",
        "error: tollgate.yaml: providers.bedrock.credentials.secret_access_key: environment variable"
        " TOLLGATE_TEST_UNSET_AWS is not set",
        "error: tollgate.yaml: mcp.servers.0.credential.bearer: environment variable TOLLGATE_TEST_UNSET_MCP is not set",
        "error: tollgate.yaml: audit.checkpoint_s: environment variable TOLLGATE_TEST_UNSET_OPENAI is not set",
        "error: tollgate.yaml: clients.0.grups: unknown key (did you mean groups?)",
    ]


def test_a_credentials_field_written_as_one_unset_variable_is_no_error_for_a_read_only_command(
    tollgate, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`credentials` takes `default` or a mapping: `${NAME}` alone, unset, is read as not written."""
    for name in ("TOLLGATE_TEST_UNSET_AWS", "TOLLGATE_TEST_UNSET_AZURE"):
        monkeypatch.delenv(name, raising=False)
    Path("tollgate.yaml").write_text(
        'providers:\n  bedrock: {credentials: "${TOLLGATE_TEST_UNSET_AWS}"}\n'
        '  azure: {credentials: "${TOLLGATE_TEST_UNSET_AZURE}"}\naudit: {path: audit.jsonl}\n'
    )
    Path("audit.jsonl").write_text("")
    assert tollgate(["inventory", "--json"]) == 0, capsys.readouterr().err
    assert tollgate(["check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: tollgate.yaml: providers.bedrock.credentials: environment variable TOLLGATE_TEST_UNSET_AWS is not set",
        "error: tollgate.yaml: providers.azure.credentials: environment variable TOLLGATE_TEST_UNSET_AZURE is not set",
    ]


def test_check_finds_no_two_places_alike_for_one_unset_variable(tollgate, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TOLLGATE_TEST_UNSET_TOKEN", raising=False)
    Path("tollgate.yaml").write_text(
        "egress:\n  credentials:\n    - {host: api.github.com, header: Authorization,"
        ' virtual: "${TOLLGATE_TEST_UNSET_TOKEN}", value: "${TOLLGATE_TEST_UNSET_TOKEN}"}\n'
    )
    assert tollgate(["check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: tollgate.yaml: egress.credentials.0.virtual: environment variable TOLLGATE_TEST_UNSET_TOKEN is not set",
        "error: tollgate.yaml: egress.credentials.0.value: environment variable TOLLGATE_TEST_UNSET_TOKEN is not set",
    ]


def test_every_command_that_reads_a_configuration_takes_it_as_config(
    tollgate, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`--config FILE` for each of them, far from ./tollgate.yaml (which would mislead them)."""
    monkeypatch.setenv("TOLLGATE_JWT_SECRET", JWT_SECRET)
    Path("tollgate.yaml").write_text("clients: [{grups: [x], name: alice}]\n")  # refused: not the one read
    Path("other.yaml").write_text(
        "clients: [{name: alice, keys: [tg-alice-0123456789]}]\n"
        "identity:\n  jwt:\n"
        '    - {issuer: https://tollgate.local, audience: tollgate, client_prefix: "jwt:", secret: "${TOLLGATE_JWT_SECRET}",'
        " algorithms: [HS256]}\n"
        "guardrails: [{detect: [pii.email], action: deny}]\n"
        "audit: {path: other.jsonl}\n"
        "ledger: {store: 'sqlite:///other-ledger.sqlite'}\n"
    )
    Path("console.yaml").write_text("console: {listn: 127.0.0.1:8090}\n")  # refused, naming the file read
    record = {"event": "llm_call", "ts": "2026-11-22T04:10:55.062Z", "client": "carol", "decision": "allow"}
    Path("other.jsonl").write_text(json.dumps({**record, "provider": "openai"}) + "\n")
    Path("body.json").write_text('{"messages": [{"role": "user", "content": "my key: tg-alice-0123456789"}]}')
    capsys.readouterr()

    assert tollgate(["check", "--config", "other.yaml"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == "other.yaml: ok (1 client)\n"
    assert tollgate(["check", "other.yaml"]) == 0  # the positional form, an alias
    assert capsys.readouterr().out == "other.yaml: ok (1 client)\n"
    with pytest.raises(SystemExit):
        tollgate(["check", "--config", "other.yaml", "tollgate.yaml"])
    assert "give the configuration once" in capsys.readouterr().err

    assert tollgate(["token", "--client", "batch", "--config", "other.yaml"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count(".") == 2  # a JWT

    assert tollgate(["scan", "body.json", "--config", "other.yaml"]) == 1
    said = capsys.readouterr()
    assert said.err.startswith("applied: other.yaml: 1 guardrails rule"), said.err
    assert "tollgate_keys" in said.out  # the key of other.yaml's client

    assert tollgate(["inventory", "--json", "--config", "other.yaml"]) == 0, capsys.readouterr().err
    assert "carol" in capsys.readouterr().out

    assert tollgate(["usage", "--config", "other.yaml"]) == 1
    assert "other-ledger.sqlite" in capsys.readouterr().err

    assert tollgate(["console", "--config", "console.yaml"]) == 1
    assert "error: console.yaml: console.listn: unknown key" in capsys.readouterr().err


def test_read_only_commands_run_with_the_records_dsn_unset(tollgate, tmp_path: Path, capsys, monkeypatch) -> None:
    """None of them reads the table: an unset DSN is neither an error nor a key they could not look for."""
    for name in ("TOLLGATE_RECORDS_DSN", "TOLLGATE_TEST_UNSET_CONSOLE_DSN"):
        monkeypatch.delenv(name, raising=False)
    Path("tollgate.yaml").write_text(
        'audit: {path: audit.jsonl, postgres: {dsn: "${TOLLGATE_RECORDS_DSN}", keep_days: 30}}\n'
        'console: {postgres_dsn: "${TOLLGATE_TEST_UNSET_CONSOLE_DSN}"}\n'
    )
    record = {"event": "llm_call", "ts": "2026-11-22T04:10:55.062Z", "client": "carol", "decision": "allow"}
    Path("audit.jsonl").write_text(json.dumps({**record, "provider": "openai"}) + "\n")
    Path("ledger.sqlite").touch()
    Path("body.json").write_text('{"messages": []}')
    assert tollgate(["scan", "body.json"]) == 0
    assert capsys.readouterr().err == "applied: tollgate.yaml: no guardrails rule, no key of Tollgate's own\n"
    assert tollgate(["inventory", "--json"]) == 0
    assert tollgate(["usage", "--from-audit", "audit.jsonl"]) == 0
    assert tollgate(["audit", "verify", "--live", "audit.jsonl"]) in (0, 1)  # reads no configuration
    assert "is not set" not in capsys.readouterr().err
    # What a proxy start would refuse, check says.
    assert tollgate(["check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "warning: tollgate.yaml: console.postgres_dsn: environment variable TOLLGATE_TEST_UNSET_CONSOLE_DSN is not"
        " set: the console refuses to start without it (the proxy does not need it)",
        "error: tollgate.yaml: audit.postgres.dsn: environment variable TOLLGATE_RECORDS_DSN is not set",
    ]


def test_check_warns_of_an_unset_variable_only_the_console_needs(tollgate, tmp_path: Path, capsys, monkeypatch):
    """The console's own DSN: a proxy starts without it (it reads no table), the console does not."""
    monkeypatch.delenv("TOLLGATE_TEST_UNSET_CONSOLE_DSN", raising=False)
    text = (
        'audit: {postgres: {dsn: "postgresql://db/x"}}\nconsole: {postgres_dsn: "${TOLLGATE_TEST_UNSET_CONSOLE_DSN}"}\n'
    )
    Path("tollgate.yaml").write_text(text)
    assert tollgate(["check"]) == 0
    said = capsys.readouterr()
    assert said.err == (
        "warning: tollgate.yaml: console.postgres_dsn: environment variable TOLLGATE_TEST_UNSET_CONSOLE_DSN is not"
        " set: the console refuses to start without it (the proxy does not need it)\n"
    )
    assert said.out == "tollgate.yaml: ok (0 clients)\n"
    assert load_config("tollgate.yaml").audit.postgres is not None  # as the proxy loads it


@pytest.mark.parametrize(
    ("argv", "usage", "error"),
    [
        (["audit", "verify"], "usage: tollgate audit verify [-h]", "tollgate audit verify: error: give audit files"),
        (["scan"], "usage: tollgate scan [-h]", "tollgate scan: error: give a request body (FILE or -)"),
        (
            ["scan", "body.json", "--answer", "a.sse"],
            "usage: tollgate scan [-h]",
            "tollgate scan: error: give a request",
        ),
    ],
)
def test_a_command_called_wrong_shows_its_own_usage(tollgate, capsys, argv: list[str], usage: str, error: str) -> None:
    """Not the top-level list of commands: what the command itself takes, and the error under it."""
    with pytest.raises(SystemExit) as done:
        tollgate(argv)
    assert done.value.code == 2
    said = capsys.readouterr().err
    assert said.startswith(usage) and error in said, said


def test_certs_help_says_what_confdir_is(tollgate, capsys) -> None:
    with pytest.raises(SystemExit):
        tollgate(["certs", "--help"])
    assert "the directory of the CA (default: ./certs" in capsys.readouterr().out


def test_certs_default_is_the_checkouts_certs_which_run_sh_uses(tmp_path: Path) -> None:
    # ./run.sh hands mitmdump `--set confdir=$ROOT/certs`; `tollgate certs` run elsewhere must name the same.
    assert checkout_certs() == ROOT / "certs"
    package = tmp_path / "addons" / "tollgate"
    package.mkdir(parents=True)
    assert checkout_certs(package) is None  # installed out of a checkout: ./certs
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    assert checkout_certs(package) == tmp_path / "certs"


def test_certs_outside_a_checkout_says_where_the_ca_is(
    tollgate, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tollgate_certs, "checkout_certs", lambda: None)
    assert tollgate(["certs"]) == 0
    said = capsys.readouterr()
    here = tmp_path / "certs"
    assert said.out.split() == [str(here / "mitmproxy-ca-cert.pem"), str(here / "ca-bundle.pem")]
    assert f"the CA is in {here} (no checkout is known, so ./certs)" in said.err
    assert f"--set confdir={here}" in said.err
