"""`./run.sh demo` as a newcomer runs it: the lines it prints pasted as printed (curl, and the Python
openai SDK from the clients' venv), the governed, refused and redacted answers, the answer whose key
is redacted, the demo's audit and its console; then Ctrl-C, after which nothing of it runs and
nothing was written outside demo/."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.cdp import Browser, chromium
from tests.support.clients import client_python
from tests.support.proxy import ROOT

DEMO = ROOT / "demo"
# What `./run.sh test` and the tools keep in the checkout, which the demo does not write.
NOT_THE_DEMOS = {".git", ".venv", ".venv-clients", ".node-clients", "node_modules", "demo", "__pycache__",
                 ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}  # fmt: skip
CARD = "4111 1111 1111 1111"
EMAIL = "dana@tollgate-demo.net"  # on a domain `pii.email` reads (not one reserved for examples)
DEPLOY_KEY = "AKIA" + "DEMO" + "Q7K3M2XW4NB5"  # the stand-in's made-up key (addons/tollgate/demo/standin.py)


def files_outside_the_demo(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of the checkout but the demo's and the tools' caches: its size and modification time."""
    found = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d not in NOT_THE_DEMOS]
        for name in files:
            path = Path(directory, name)
            if path.parent == root / "certs" and path.name.startswith("tollgate-listening"):
                continue  # the address of a proxy ./run.sh started here: other tests run one beside
            with_stat = path.lstat()
            found[str(path.relative_to(root))] = (with_stat.st_size, with_stat.st_mtime_ns)
    return found


def printed_lines(demo: subprocess.Popen, seconds: float) -> list[str]:
    """What the demo printed on standard output up to its `tail` line (the last it prints)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline, seen = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if line.startswith("tail -n"):
            return seen
    raise AssertionError(f"the demo printed no lines to paste (exit {demo.poll()}):\n" + "\n".join(seen))


def commands_by_comment(lines: list[str]) -> dict[str, str]:
    """Each printed command under the comment before it."""
    commands, comment = {}, ""
    for line in lines:
        if line.startswith("# "):
            comment = line
        elif line and comment and not line.startswith(("export ", "pip ", "python3 -m venv ")):
            commands[comment] = line
            comment = ""
    return commands


def paste(export: str, command: str, home: Path) -> str:
    """`command` run in a shell as a user pastes it after the export line; `python3` is the clients'
    (where `pip install openai` put the SDK). Its standard output."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and "CA_BUNDLE" not in k}
    clean.pop("SSL_CERT_FILE", None)
    bin_dir = str(Path(client_python()).parent)
    env = {**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home)}
    done = subprocess.run(
        ["/bin/bash", "-c", f"{export}\n{command}"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def calls_in_audit(audit: Path, count: int) -> list[dict]:
    deadline = time.monotonic() + 15  # the audit writer writes in batches, moments later
    calls: list[dict] = []
    while time.monotonic() < deadline:
        whole = audit.read_text().rpartition("\n")[0] if audit.exists() else ""
        calls = [json.loads(line) for line in whole.splitlines() if '"llm_call"' in line]
        if len(calls) >= count:
            break
        time.sleep(0.1)
    return calls


def console_api(url: str, path: str) -> object:
    """What the console's JSON API answers at `path`, asked with the token of the address printed."""
    base, _, token = url.partition("/?token=")
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1
    with opener.open(request, timeout=10) as answer:
        return json.loads(answer.read())


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_run_sh_demo_makes_a_governed_a_refused_and_a_redacted_call_then_stops(tmp_path):
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    before = files_outside_the_demo(ROOT)
    env = {k: v for k, v in os.environ.items() if k not in ("TOLLGATE_LISTEN", "HTTPS_PROXY", "https_proxy")}
    demo = subprocess.Popen(
        [str(ROOT / "run.sh"), "demo"],
        cwd=here,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "demo.log").open("w"),
        text=True,
        env={**env, "HOME": str(home)},
        start_new_session=True,  # its own process group: what is left of it after Ctrl-C is found there
    )
    try:
        lines = printed_lines(demo, 180)
        export = next(line for line in lines if line.startswith("export "))
        # pip is run before the export: after it, pip would go through the demo, which refuses PyPI.
        assert lines.index("pip install openai") < lines.index(export)
        # In a venv of the demo's, made and entered just before: a system's Python may refuse pip
        # (Debian's: externally-managed-environment). Made here without PyPI; its pip and python3
        # come first in that shell (a home of its own: the user's step, not the demo's).
        venv = DEMO / "venv"
        assert lines[lines.index("pip install openai") - 1] == f"python3 -m venv {venv} && . {venv}/bin/activate"
        entered = subprocess.run(
            ["/bin/bash", "-c", f"{lines[lines.index('pip install openai') - 1]}\ncommand -v pip python3"],
            capture_output=True, text=True, timeout=120, env={**env, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert (entered.returncode, entered.stdout) == (0, f"{venv}/bin/pip\n{venv}/bin/python3\n"), entered.stderr
        proxy = export.split()[1].removeprefix("HTTPS_PROXY=")
        port = int(proxy.rpartition(":")[2])
        assert proxy.startswith("http://127.0.0.1:") and port not in (8080, 8081, 8090)
        console_line = next(line for line in lines if line.startswith("Tollgate console: "))
        console = console_line.split()[2]
        console_port = int(console.split("/")[2].rpartition(":")[2])
        assert console.startswith("http://127.0.0.1:") and "/?token=" in console
        assert console_port not in (8080, 8081, 8090, port)
        commands = commands_by_comment(lines)
        assert [c.split(":")[0] for c in commands] == [
            "# A governed call", "# Refused by the policy (403 policy_denied)", "# Redacted by the guardrail",
            "# Streamed, in Gemini's shape", "# The same from Python's openai SDK, streamed",
            "# The answer is read too", "# What Tollgate recorded",
        ]  # fmt: skip
        governed, refused, redacted, gemini, python, key_asked, tail = commands.values()
        assert "tg-demo-" in governed and python.startswith("python3 -c 'from openai import OpenAI")

        answer = json.loads(paste(export, governed, home))
        assert answer["choices"][0]["message"]["content"] == "(stand-in OpenAI) You said: Hello"
        assert answer["usage"] == {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
        assert json.loads(paste(export, refused, home))["error"] == {
            "message": "Tollgate policy denied this call: model gpt-4o is not allowed for interns",
            "type": "permission_denied",
            "param": None,
            "code": "policy_denied",
        }
        message = json.loads(paste(export, redacted, home))
        assert CARD in redacted and EMAIL in redacted
        said = "Refund the card [REDACTED:pii.payment_card] and mail [REDACTED:pii.email]"
        assert message["content"] == [{"type": "text", "text": f"(stand-in Anthropic) You said: {said}"}]
        events = [json.loads(line.removeprefix("data: ")) for line in paste(export, gemini, home).split("\n\n") if line]
        said = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
        assert (said, events[-1]["usageMetadata"]["totalTokenCount"]) == ("(stand-in Gemini) You said: Hello", 6)
        assert paste(export, python, home) == "(stand-in OpenAI) You said: Hello from Python\n"
        assert paste(export, key_asked, home) == (
            "(stand-in OpenAI) The deploy key is [REDACTED:secrets.aws_access_key_id].\n"
        )

        audit = DEMO / "audit.jsonl"
        assert tail == f"tail -n 5 {audit}"
        calls = calls_in_audit(audit, 6)
        assert [
            (c["client"], c["provider"], c["model"], c["decision"], c["status"], c["input_tokens"], c["findings"])
            for c in calls
        ] == [
            ("alice", "openai", "gpt-4o-mini", "allow", 200, 1, {}),
            ("bob", "openai", "gpt-4o", "deny", 403, None, {}),
            ("alice", "anthropic", "claude-haiku-4-5", "allow", 200, 7, {"pii.email": 1, "pii.payment_card": 1}),
            ("alice", "gemini", "gemini-2.5-flash", "allow", 200, 1, {}),
            ("alice", "openai", "gpt-4o-mini", "allow", 200, 3, {}),
            ("alice", "openai", "gpt-4o-mini", "allow", 200, 5, {}),
        ]
        assert calls[-1]["answer_findings"] == {"secrets.aws_access_key_id": 1}
        # The proxy's line for that call (on standard error) names what the answer held, by kind.
        said = (tmp_path / "demo.log").read_text()
        assert "answer found secrets.aws_access_key_id 1 (1 redacted)" in said and DEPLOY_KEY not in said
        assert "found pii.email 1, pii.payment_card 1 (2 redacted)" in said and EMAIL not in said
        text = audit.read_text()
        assert CARD not in text and EMAIL not in text and "tg-demo-" not in text and "not-a-real-key" not in text
        assert DEPLOY_KEY not in text
        assert paste(export, tail, home).count('"llm_call"') == 5
        # The console shows the same: the calls by client, the findings by kind (never a value). It
        # reads the audit as it grows, moments after its writing.
        deadline, people = time.monotonic() + 15, {}
        while time.monotonic() < deadline:
            rows = console_api(console, "/api/people")
            people = {row["client"]: (row["calls"], row["refused"]) for row in rows}  # type: ignore[union-attr]
            if sum(calls for calls, _ in people.values()) >= 6:
                break
            time.sleep(0.2)
        assert people == {"alice": (5, 0), "bob": (1, 1)}
        assert sorted((f["kind"], f["client"], f["count"]) for f in console_api(console, "/api/findings")) == [  # type: ignore[union-attr]
            ("pii.email", "alice", 1),
            ("pii.payment_card", "alice", 1),
            ("secrets.aws_access_key_id", "alice", 1),
        ]
        # Its one budget, for everyone, has counted the tokens and the cost of the calls let through.
        tokens = sum(c["total_tokens"] or 0 for c in calls)
        # The budget counts a call once its answer has ended, moments after the proxy's line for it.
        deadline, budgets = time.monotonic() + 15, []
        while time.monotonic() < deadline:
            budgets = console_api(console, "/api/budgets")  # type: ignore[assignment]
            if budgets and budgets[0]["used"] == tokens:  # type: ignore[index]
                break
            time.sleep(0.2)
        assert [(b["limit"], b["field"], b["subject"], b["window"], b["cap"]) for b in budgets] == [  # type: ignore[index]
            ("demo budget", "tokens_per_day", None, "day", 100000),
            ("demo budget", "usd_per_day", None, "day", 1.0),
        ]
        assert budgets[0]["used"] == tokens > 0  # type: ignore[index]
        assert budgets[1]["used"] == round(sum(c["cost_usd"] or 0 for c in calls), 9) > 0  # type: ignore[index]
        # Every view of the console has rows after the printed lines: the API's, as many as the demo makes.
        assert len([e for e in console_api(console, "/api/events")["events"] if e["event"] == "llm_call"]) == 6  # type: ignore[index]
        assert [(s["key"], s["calls"]) for s in console_api(console, "/api/spend")] == [  # type: ignore[union-attr]
            ("anthropic", 1), ("gemini", 1), ("openai", 4),
        ]  # fmt: skip
        assert [(r["kind"], r["client"], r["count"]) for r in console_api(console, "/api/refusals")] == [  # type: ignore[union-attr]
            ("policy_denied", "bob", 1),
        ]
        assert [(s["client"], s["service"], s["calls"], s["refused"]) for s in console_api(console, "/api/inventory")] == [  # type: ignore[union-attr]
            ("alice", "anthropic", 1, 0), ("alice", "gemini", 1, 0), ("alice", "openai", 3, 0), ("bob", "openai", 0, 1),
        ]  # fmt: skip
        assert [(a["records"] >= 7, a["state"]) for a in console_api(console, "/api/audit")] == [(True, "whole")]  # type: ignore[union-attr]
        # And the page in Chromium, 1,024 pixels wide: every view shows rows, Live's times on one line.
        every_view_shows_rows(console, tmp_path, calls[0]["ts"][:10], budgets[1]["used"])  # type: ignore[index]
        # A second demo would write over this one's files: it says so and stops.
        second = subprocess.run([str(ROOT / "run.sh"), "demo"], capture_output=True, text=True, timeout=120, env=env)
        assert (second.returncode, second.stdout) == (1, "")
        assert second.stderr == f"tollgate demo: another ./run.sh demo runs with {DEMO}: stop it first (Ctrl-C)\n"
        assert calls_in_audit(audit, 6) == calls
        # Any other host is refused: nothing leaves the machine.
        elsewhere = subprocess.run(
            ["/bin/bash", "-c", f"{export}\ncurl -sS https://example.org/"], capture_output=True, text=True, timeout=30
        )
        assert (elsewhere.returncode, elsewhere.stderr) == (56, "curl: (56) CONNECT tunnel failed, response 403\n")
    finally:
        code = interrupted(demo)
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    # Nothing of it runs: its process group is empty, and neither it nor the proxy listens.
    assert_group_gone(demo.pid)
    assert not listening(port) and not listening(console_port)
    # It wrote nothing outside demo/: not in the checkout, the directory it ran from or the home.
    assert files_outside_the_demo(ROOT) == before
    assert list(here.iterdir()) == list(home.iterdir()) == []
    assert {p.name for p in DEMO.iterdir()} >= {"ca", "tollgate.yaml", "policy.rego", "audit.jsonl", "demo.lock"}


# Each view of the console's page, by the start of its heading, and the rows it shows after the demo.
VIEWS = {"live": ("Live", 7), "people": ("People", 2), "spend": ("Spend", 3), "refusals": ("Refusals", 1),
         "guardrails": ("Guardrails", 3), "services": ("AI services", 4), "budgets": ("Budgets", 2),
         "audit": ("Audit", 1)}  # fmt: skip


def every_view_shows_rows(console: str, tmp_path: Path, day: str, cost: float) -> None:
    """Each view of the console's page opened in Chromium at 1,024 pixels: its rows (Live's at least
    its calls and the start, as checkpoints may follow), nothing wider than the window, a time in
    Live on one line, Spend's day as a date and its scale's top (the day's `cost`) whole, left of
    the bars. A screenshot of each is kept under TOLLGATE_SCREENSHOTS, else tmp_path."""
    shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser = Browser(chromium(), tmp_path / "profile", width=1024, height=768)
    try:
        browser.go(console)
        for view, (heading, count) in VIEWS.items():
            browser.evaluate(f"location.hash = {json.dumps(view)}")
            shown = "((document.querySelector('#main h2') || {}).textContent || '')"
            browser.wait_for(f"{shown}.startsWith({json.dumps(heading)})")
            rows = "document.querySelectorAll('#main tbody tr').length"
            if view == "live":
                assert browser.wait_for(f"{rows} >= {count} && {rows}") >= count
            else:
                browser.wait_for(f"{rows} === {count}")
            assert browser.evaluate("document.documentElement.scrollWidth") <= 1024, view
            browser.screenshot(shots / f"demo-{view}-1024.png")
            if view == "live":
                # One line box for each time: "08:43:36", not "08:43:3" above "6".
                lines = browser.evaluate(
                    "Array.from(document.querySelectorAll('#live tbody tr td:first-child')).map(c => {"
                    " const r = document.createRange(); r.selectNodeContents(c); return r.getClientRects().length; })"
                )
                assert set(lines) == {1}, lines
                # The refusal's reason is short enough to be read whole in its column (over lines).
                reason = (
                    "Array.from(document.querySelectorAll('#live tbody tr.deny td'))"
                    ".find(c => c.title === 'model gpt-4o is not allowed for interns')"
                )
                shown = f"({reason}.firstElementChild || {reason})"
                assert browser.evaluate(f"{shown}.scrollHeight <= {shown}.clientHeight")
                assert browser.evaluate(f"{shown}.scrollWidth <= {shown}.clientWidth")
            if view == "spend":
                texts = "Array.from(document.querySelectorAll('svg.plot text')).map(t => t.textContent)"
                top = f"${cost:.9f}".rstrip("0")
                assert browser.evaluate(texts)[:3] == [top, "$0", day]
                assert set(browser.evaluate(
                    "Array.from(document.querySelectorAll('#main tbody tr')).map(r => r.querySelector('td').textContent)"
                )) == {day}  # fmt: skip
                scale = "document.querySelector('svg.plot text').getBoundingClientRect().right"
                bars = "Math.min(...Array.from(document.querySelectorAll('svg.plot rect title')).map(t => t.parentNode.getBoundingClientRect().left))"
                assert browser.evaluate(f"{scale} <= {bars}")
    finally:
        browser.close()


def interrupted(demo: subprocess.Popen) -> int:
    """The demo stopped as its user stops it (Ctrl-C) if it still runs; its exit status."""
    if demo.poll() is None:
        os.kill(demo.pid, signal.SIGINT)
    return demo.wait(timeout=30)


def assert_group_gone(pgid: int) -> None:
    """Nothing of the process group `pgid` runs any more, within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.1)
    assert not group_alive(pgid)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# The demo's people as `./run.sh demo --sign-in` prints them, what the console calls them, and the
# clients whose calls each sees (alice's client is in research, bob's an intern's).
SIGNING_IN = {
    "sam@example.com": ("Sam Security · security", ["alice", "bob"]),
    "lena@example.com": ("Lena Lead · lead", ["alice"]),
    "bob@example.com": ("Bob Developer · self", ["bob"]),
}


def test_run_sh_demo_sign_in_lets_each_person_sign_in_and_see_their_scope(tmp_path):
    """`./run.sh demo --sign-in` as the docs say: the console behind the demo's own OpenID Connect
    provider; in Chromium, each person it prints signs in by picking their name on its login page
    and sees what their role lets them, then signs out."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TOLLGATE_LISTEN", "HTTPS_PROXY", "https_proxy")}
    demo = subprocess.Popen(
        [str(ROOT / "run.sh"), "demo", "--sign-in"], cwd=here, stdout=subprocess.PIPE,
        stderr=(tmp_path / "demo.log").open("w"), text=True, env={**env, "HOME": str(home)}, start_new_session=True,
    )  # fmt: skip
    shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    try:
        lines = printed_lines(demo, 180)
        console_line = next(line for line in lines if line.startswith("Tollgate console: "))
        base = console_line.split()[2].rstrip("/")
        assert base.startswith("http://127.0.0.1:") and "token" not in console_line  # people sign in: no token
        start = next(n for n, line in enumerate(lines) if line.startswith("Sign in to the console as one of these"))
        assert lines[start].endswith(f"open {base}/ and the demo's own OpenID")
        issuer = lines[start + 1].split("(")[1].split(")")[0]
        people = [line.split() for line in lines[start + 2 : start + 5]]
        assert [p[2] for p in people] == list(SIGNING_IN)
        assert lines[start + 5].startswith("Sign out (top right) to sign in as another")
        # The provider speaks the protocol: its discovery names its endpoints and its keys sign RS256.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{issuer}/.well-known/openid-configuration", timeout=10) as answer:
            discovery = json.loads(answer.read())
        assert (discovery["issuer"], discovery["code_challenge_methods_supported"]) == (issuer, ["S256"])
        with opener.open(discovery["jwks_uri"], timeout=10) as answer:
            assert [(k["kty"], k["alg"]) for k in json.loads(answer.read())["keys"]] == [("RSA", "RS256")]
        # A call of each client: alice's let through, bob's refused.
        export = next(line for line in lines if line.startswith("export "))
        commands = commands_by_comment(lines)
        governed = next(c for k, c in commands.items() if k.startswith("# A governed call"))
        refused = next(c for k, c in commands.items() if k.startswith("# Refused by the policy"))
        paste(export, governed, home)
        paste(export, refused, home)
        assert len(calls_in_audit(DEMO / "audit.jsonl", 2)) == 2
        browser = Browser(chromium(), tmp_path / "profile", width=1024, height=768)
        try:
            for email, (who, clients) in SIGNING_IN.items():
                browser.go(f"{base}/#people")
                assert browser.evaluate("location.href").startswith(f"{issuer}/authorize?")
                assert browser.evaluate("document.querySelector('h1').textContent") == "Tollgate demo: who are you?"
                if email == "sam@example.com":
                    browser.screenshot(shots / "demo-sign-in-provider.png")
                browser.evaluate(f"document.querySelector('button[value=\"{email}\"]').click()")
                browser.wait_for(f"location.href.startsWith({json.dumps(base)}) && document.readyState === 'complete'")
                browser.wait_for(
                    "!document.getElementById('who').hidden && document.getElementById('who-name').textContent"
                )
                assert browser.evaluate("document.getElementById('who-name').textContent") == who
                browser.evaluate("location.hash = 'people'")
                browser.wait_for(f"document.querySelectorAll('#people tbody tr').length === {len(clients)}")
                shown = browser.evaluate(
                    "Array.from(document.querySelectorAll('#people tbody tr td:first-child')).map(c => c.textContent)"
                )
                assert sorted(shown) == clients, email
                me = browser.call("Runtime.evaluate", expression="fetch('/api/me').then(r => r.json())",
                                  awaitPromise=True, returnByValue=True)["result"]["value"]  # fmt: skip
                assert (me["email"], me["clients"]) == (email, None if len(clients) == 2 else clients)
                audit_tab = "document.querySelector('a[data-view=\"audit\"]')"
                assert browser.evaluate(f"{audit_tab}.hidden") == (email != "sam@example.com")
                browser.screenshot(shots / f"demo-signed-in-{email.split('@')[0]}.png")
                browser.evaluate("document.getElementById('sign-out').click()")
                browser.wait_for(f"location.href === {json.dumps(base + '/auth/signed-out')}")
        finally:
            browser.close()
    finally:
        code = interrupted(demo)
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    assert_group_gone(demo.pid)
    assert not listening(int(issuer.rpartition(":")[2])) and not listening(int(base.rpartition(":")[2]))
    # Each sign-in is in the console's access log, with who it was.
    access = [json.loads(line) for line in (DEMO / "audit.jsonl.console-access.jsonl").read_text().splitlines()]
    assert [r.get("email") for r in access if r["action"] == "sign_in"] == list(SIGNING_IN)
    assert list(here.iterdir()) == list(home.iterdir()) == []
