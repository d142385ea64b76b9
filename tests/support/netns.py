"""A network namespace a test makes for itself: a client inside it, joined to this machine by a
veth pair, whose traffic goes only to addresses the namespace's pair holds. Everything it makes
(the namespace, its veth pair, iptables rules, the /etc/netns hosts file) is removed on close,
whatever happened."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from pathlib import Path

# The tools the namespace needs, and the Debian package of each (`./run.sh test` installs them).
TOOLS = {"ip": "iproute2", "iptables": "iptables"}


def missing(tools: dict[str, str]) -> str | None:
    """Why a namespace cannot be made here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    absent = [f"{tool} (Debian: {package})" for tool, package in tools.items() if not shutil.which(tool)]
    return f"needs {', '.join(absent)}" if absent else None


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=check)


def free_subnet() -> ipaddress.IPv4Network:
    """A /29 in 10.213.0.0/16 that no address or route of this machine touches."""
    taken = [
        ipaddress.ip_network(word, strict=False)
        for line in run("ip", "-4", "-o", "addr").stdout.splitlines() + run("ip", "-4", "route").stdout.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    for subnet in ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=29):
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise RuntimeError("no free /29 in 10.213.0.0/16")


class Namespace:
    """`name`, with `client` (its end of the veth pair) and, on this machine's end, `gateway` (its
    route out) and `provider` (the address the namespace's hosts file gives the provider hosts:
    a connection to it that nothing captured reaches nothing)."""

    def __init__(self, hosts: list[str]) -> None:
        tag = secrets.token_hex(3)
        self.name = f"tg{tag}"
        self.outer, self.inner = f"tgh{tag}", f"tgc{tag}"
        subnet = free_subnet()
        gateway, client, provider = list(subnet.hosts())[:3]
        self.gateway, self.client, self.provider = str(gateway), str(client), str(provider)
        self.prefix = subnet.prefixlen
        self._rules: list[list[str]] = []
        self._etc = Path("/etc/netns") / self.name
        try:
            self._make(hosts)
        except BaseException:
            self.close()
            raise

    def _make(self, hosts: list[str]) -> None:
        run("ip", "netns", "add", self.name)
        run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        run("ip", "link", "set", self.inner, "netns", self.name)
        run("ip", "addr", "add", f"{self.gateway}/{self.prefix}", "dev", self.outer)
        run("ip", "addr", "add", f"{self.provider}/32", "dev", self.outer)
        run("ip", "link", "set", self.outer, "up")
        self.exec("ip", "addr", "add", f"{self.client}/{self.prefix}", "dev", self.inner)
        self.exec("ip", "link", "set", self.inner, "up")
        self.exec("ip", "link", "set", "lo", "up")
        self.exec("ip", "route", "add", "default", "via", self.gateway)
        # `ip netns exec` mounts these over /etc/hosts: the client resolves without DNS.
        self._etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{self.provider} {host}" for host in hosts)]
        (self._etc / "hosts").write_text("\n".join(lines) + "\n")

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.name, *command, check=check)

    def command(self, *command: str) -> list[str]:
        """`command` run inside the namespace (for subprocess.Popen and run)."""
        return ["ip", "netns", "exec", self.name, *command]

    def iptables(self, *rule: str) -> None:
        """Append `rule` (`-t TABLE -A CHAIN …` without -A: given as TABLE, CHAIN, match…) on this machine."""
        table, chain, *match = rule
        run("iptables", "-w", "5", "-t", table, "-A", chain, *match)
        self._rules.append(["iptables", "-w", "5", "-t", table, "-D", chain, *match])

    def close(self) -> None:
        for rule in reversed(self._rules):
            run(*rule, check=False)
        self._rules.clear()
        run("ip", "netns", "del", self.name, check=False)  # takes its end of the pair, and so both
        run("ip", "link", "del", self.outer, check=False)
        shutil.rmtree(self._etc, ignore_errors=True)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
