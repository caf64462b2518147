"""Network-namespace lab for the iptables tests: everything happens inside namespaces created
here, never on the host.

`Lab` builds two namespaces joined by a veth pair ("vm" 10.250.0.1/24, "svc" 10.250.0.2/24),
applies rules in "vm" with `meshc.iptables.APPLY_SCRIPT`, and runs small Python TCP/UDP
servers and clients inside them (`ip netns exec`), each bounded by timeouts. Servers answer one
line: ``<name> port=<local port> orig=<SO_ORIGINAL_DST>``, so a test sees who accepted a
connection and where the client meant to go. `Lab.close` kills the processes it started (by
their Popen handle) and deletes both namespaces, also after failures.
"""

from __future__ import annotations

import functools
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshc.proxy.iptables.model import BUILTIN_CHAINS
from meshc.proxy.iptables.rules import APPLY_SCRIPT

VM_IP, SVC_IP = "10.250.0.1", "10.250.0.2"
TIMEOUT = 15

SERVER = r"""
import encodings.idna, os, socket, struct, sys, threading, time
name, uid, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if uid:  # before creating sockets: the owner match sees the credentials a socket was opened with
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
socks = []
for spec in specs:
    proto, _, where = spec.partition(":")
    addr, _, port = where.rpartition(":")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr or "0.0.0.0", int(port)))
    if proto == "tcp":
        s.listen(16)
    socks.append((proto, s))
def orig(c):
    try:
        raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
        return "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])
    except OSError:
        return "%s:%d" % c.getsockname()
def tcp(s):
    while True:
        c, _ = s.accept()
        c.sendall(("%s port=%d orig=%s\n" % (name, c.getsockname()[1], orig(c))).encode()); c.close()
def udp(s):
    while True:
        _, peer = s.recvfrom(512)
        s.sendto(("%s port=%d\n" % (name, s.getsockname()[1])).encode(), peer)
for proto, s in socks:
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(s,), daemon=True).start()
print("READY", flush=True)
while True:
    time.sleep(60)
"""

CLIENT = r"""
import encodings.idna, os, socket, sys  # everything imported before dropping privileges
proto, host, port, uid, gid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if uid or gid:
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(3)
    s.connect((host, port))
    if proto == "udp":
        s.send(b"query")
    print(s.recv(512).decode().strip() or "EMPTY")
except ConnectionRefusedError:
    print("REFUSED")
except ConnectionResetError:
    print("RESET")
except socket.timeout:
    print("TIMEOUT")
except PermissionError:
    print("EPERM")  # a local packet dropped/rejected in OUTPUT fails the send itself
except OSError as e:
    print("ERROR %s" % e.errno)
"""


@dataclass(frozen=True)
class Backend:
    name: str  # "nft" or "legacy"

    @property
    def save(self) -> str:
        return f"iptables-{self.name}-save"

    @property
    def restore(self) -> str:
        return f"iptables-{self.name}-restore"


def run(args: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@functools.lru_cache(maxsize=None)
def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network-namespace tests need root"
    if not shutil.which("ip"):
        return "`ip` (apt package iproute2) is not installed"
    name = f"meshc-probe-{uuid.uuid4().hex[:8]}"
    proc = run(["ip", "netns", "add", name], check=False)
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.strip()}"
    run(["ip", "netns", "del", name], check=False)
    return None


PROBE = """*nat
:MESHC_PROBE - [0:0]
-A MESHC_PROBE -p tcp -m owner --uid-owner 1337 -j REDIRECT --to-ports 15001
COMMIT
*raw
:MESHC_PROBE - [0:0]
-A MESHC_PROBE -p udp --dport 53 -j CT --zone 1
COMMIT
*filter
:MESHC_PROBE - [0:0]
-A MESHC_PROBE -p tcp -m conntrack --ctorigdstport 80 -j REJECT --reject-with tcp-reset
COMMIT
"""


@functools.lru_cache(maxsize=None)
def backend_unavailable(name: str) -> str | None:
    """Why this iptables backend cannot be used here, or None (probed in a throwaway namespace)."""
    reason = netns_unavailable()
    if reason:
        return reason
    backend = Backend(name)
    if not (shutil.which(backend.restore) and shutil.which(backend.save)):
        return f"{backend.restore} is not installed (apt package iptables)"
    ns = f"meshc-probe-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", ns])
    try:
        proc = run(["ip", "netns", "exec", ns, backend.restore, "--test"], stdin=PROBE, check=False)
    finally:
        run(["ip", "netns", "del", ns], check=False)
    return None if proc.returncode == 0 else f"{backend.restore} does not work here: {proc.stderr.strip()}"


BACKENDS = ["nft", "legacy"]


def require_backend(name: str) -> None:
    """Skip (with the reason) when namespaces or this backend's tools are missing here, or when
    only this backend is broken and the other one is tested; fail when neither backend works."""
    reason = backend_unavailable(name)
    if reason is None:
        return
    if netns_unavailable() or "not installed" in reason:
        pytest.skip(reason)
    other = "legacy" if name == "nft" else "nft"
    if backend_unavailable(other) is None:
        pytest.skip(f"{reason} (the {other} backend is tested)")
    pytest.fail(reason)


def normalise_save(text: str) -> str:
    """iptables-save output without comments and with counters zeroed."""
    lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in text.splitlines() if not ln.startswith("#")]
    return "\n".join(lines) + "\n"


def parse_save(text: str) -> dict[str, dict[str, tuple[str, list[str]]]]:
    """table -> chain -> (policy, rules in order); independent of chain listing order."""
    tables: dict[str, dict[str, tuple[str, list[str]]]] = {}
    table = ""
    for line in normalise_save(text).splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = {}
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            tables[table][name] = (policy, [])
        elif line.startswith("-A "):
            tables[table][line.split()[1]][1].append(line)
    return tables


def meaningful(save: str) -> dict[str, dict[str, tuple[str, list[str]]]]:
    """Parsed iptables-save without empty built-in chains and empty tables (which nft creates
    on first use and never removes)."""
    tables = {t: {c: v for c, v in chains.items() if not (c in BUILTIN_CHAINS and v == ("ACCEPT", []))}
              for t, chains in parse_save(save).items()}
    return {t: chains for t, chains in tables.items() if chains}


class Lab:
    """Two namespaces ("vm", "svc") joined by a veth pair; see the module docstring."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        tag = uuid.uuid4().hex[:6]
        self.vm, self.svc = f"meshc-vm-{tag}", f"meshc-svc-{tag}"
        self.procs: list[subprocess.Popen[str]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="meshc-lab-"))
        self.namespaces: list[str] = []
        self.tag = tag

    def start(self) -> "Lab":
        """Create the namespaces and the veth pair (call `close` even when this fails)."""
        tag = self.tag
        for ns in (self.vm, self.svc):
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        vm_if, svc_if = f"mv{tag}", f"ms{tag}"
        run(["ip", "-n", self.vm, "link", "add", vm_if, "type", "veth", "peer", "name", svc_if, "netns", self.svc])
        for ns, ifname, ip in ((self.vm, vm_if, VM_IP), (self.svc, svc_if, SVC_IP)):
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
        return self

    # --- iptables -------------------------------------------------------------------------------

    def restore(self, text: str, *flags: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
        """Plain iptables-restore of `text` in `ns` (default "vm")."""
        return run(["ip", "netns", "exec", ns or self.vm, self.backend.restore, *flags], stdin=text)

    def apply(self, text: str) -> None:
        """Install a rules file in "vm" the documented way (APPLY_SCRIPT)."""
        rules, script = self.tmp / "vm.rules", self.tmp / "meshc-iptables-apply"
        rules.write_text(text)
        script.write_text(APPLY_SCRIPT)
        run(["ip", "netns", "exec", self.vm, "env", f"IPTABLES_SAVE={self.backend.save}",
             f"IPTABLES_RESTORE={self.backend.restore}", "sh", str(script), str(rules)])

    def save(self, ns: str | None = None) -> str:
        """iptables-save of `ns` (default "vm"), normalised (`normalise_save`)."""
        return normalise_save(run(["ip", "netns", "exec", ns or self.vm, self.backend.save]).stdout)

    # --- traffic --------------------------------------------------------------------------------

    def serve(self, ns: str, name: str, *specs: str, uid: int = 0) -> None:
        """Start a server answering on e.g. "tcp:8080", "udp:127.0.0.1:15053"; returns once it listens."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, name, str(uid), *specs],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            proc.kill()
            raise AssertionError(f"server {name} did not start: {proc.communicate(timeout=5)[1]}")

    def call(self, ns: str, host: str, port: int, proto: str = "tcp", uid: int = 0, gid: int = 0) -> str:
        """Connect (as uid/gid) and return the server's line, or REFUSED / RESET / TIMEOUT / ERROR n."""
        args = ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, proto, host, str(port), str(uid), str(gid)]
        return run(args).stdout.strip()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.communicate(timeout=5)
        for ns in self.namespaces:
            run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
