"""TLS origination checks of pass `validate`: TLS that would not really happen, or happen twice.

Codes: V012 credentialName without clientSelector (sidecars drop the TLS context and send
plaintext, istio-facts pitfall 23), V013 mutual without client certificate, V014
insecureSkipVerify combined with verification settings, V015 origination on a port where the
application already speaks TLS, V016 origination towards port 80, V017 origination on a TCP port
without sni (auto SNI only works for HTTP, pitfall 25).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.front.checker import Checker
from meshc.model.core import Port
from meshc.model.diagnostics import DataPath, Severity

ORIGINATING = {"simple", "mutual"}


def check_tls(chk: Checker, ports: dict[int, Port]) -> None:
    top = chk.data.get("tls")
    if top:
        _settings(chk, ("tls",), top)
        for number in ports:
            if not _port_overridden(chk.data, number):
                _origination(chk, ("tls", "mode"), top, ports[number])
    policy = chk.data.get("trafficPolicy") or {}
    for j, entry in enumerate(policy.get("portLevel", [])):
        if entry.get("tls") and entry["port"] in ports:
            path: DataPath = ("trafficPolicy", "portLevel", j, "tls")
            _settings(chk, path, entry["tls"])
            _origination(chk, path + ("mode",), entry["tls"], ports[entry["port"]])


def _port_overridden(data: Mapping[str, Any], number: int) -> bool:
    policy = data.get("trafficPolicy") or {}
    return any(e["port"] == number for e in policy.get("portLevel", []))


def _settings(chk: Checker, path: DataPath, tls: Mapping[str, Any]) -> None:
    mode = tls["mode"]
    if tls.get("credentialName") and not chk.data.get("clientSelector"):
        chk.add("V012", path + ("credentialName",), "credentialName is ignored by sidecars unless "
                "the DestinationRule selects its clients: traffic would leave in plaintext",
                "add clientSelector: {app: <client>} or use file paths (caCertificates, ...)")
    if mode == "mutual" and not tls.get("credentialName") and not (
            tls.get("clientCertificate") and tls.get("privateKey")):
        chk.add("V013", path + ("mode",), "mutual TLS needs a client certificate",
                "set credentialName, or clientCertificate and privateKey")
    if tls.get("insecureSkipVerify") and any(
            tls.get(k) for k in ("caCertificates", "subjectAltNames", "credentialName")
            if not (k == "credentialName" and mode == "mutual")):
        chk.add("V014", path + ("insecureSkipVerify",), "insecureSkipVerify cannot be combined "
                "with caCertificates, subjectAltNames or credentialName",
                "remove insecureSkipVerify, or the verification settings")


def _origination(chk: Checker, path: DataPath, tls: Mapping[str, Any], port: Port) -> None:
    if tls["mode"] not in ORIGINATING:
        return
    at = _port_index(chk, port.number)
    protocol = (("ports", at, "protocol"),) if at is not None else ()
    if port.protocol in ("HTTPS", "TLS"):
        chk.add("V015", path, f"port {port.number} is {port.protocol}: the application already "
                "speaks TLS, so originating TLS would wrap TLS in TLS",
                f"declare port {port.number} as HTTP (with targetPort: 443) and originate TLS "
                "only for it under trafficPolicy.portLevel", involves=protocol)
    elif (port.target_port or port.number) == 80:
        target = (("ports", at, "targetPort"),) if at is not None else ()
        chk.add("V016", path, "TLS would be originated towards port 80 of the server",
                "set targetPort: 443 on the port", Severity.WARNING, involves=target)
    elif port.protocol not in ("HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY") and not tls.get("sni"):
        chk.add("V017", path, f"port {port.number} is {port.protocol}: without sni the server gets "
                "no SNI (automatic SNI only works for HTTP)", "set tls.sni",
                Severity.WARNING, involves=protocol)


def _port_index(chk: Checker, number: int) -> int | None:
    return next((i for i, p in enumerate(chk.data.get("ports") or []) if p.get("number") == number), None)
