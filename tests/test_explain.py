"""`meshc explain`: every value of an emitted object traced to the lines that wrote it.

The table below was checked by hand against the example estate's files: each expected position is
the line and column where the value (not its key) starts, in the layer named. A copy of the estate
in a temporary folder is compiled once per module (the cases run on one in-memory compile).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshc.adopt.explain import (
    ExplainError,
    Explanation,
    FieldExplanation,
    Session,
    explain,
    explain_in,
    open_env,
    render_text,
    resolve_field,
    where,
)
from meshc.cli.explain import explain_command
from meshc.diff.run import DiffRequest, run

from .conftest import copy_example_estate

TODAY = dt.date(2026, 6, 1)  # the estate's waiver runs until 2027-06-30


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example_estate(tmp_path_factory.mktemp("explain") / "estate")


@pytest.fixture(scope="module")
def prod(estate: Path) -> Session:
    return open_env(estate, "prod", checks=False)


def chain(f: FieldExplanation) -> list[str]:
    """The positioned steps of a field, `role file:line:col`; an Envoy value's Istio field follows as `via ...`."""
    out = [f"{s.role} {where(s.position)}" for s in f.steps if s.position is not None and s.position.line]
    if f.via is not None:
        out += [f"via {step}" for step in chain(f.via[1])]
    return out


def one(session: Session, obj: str, field: str) -> FieldExplanation:
    exp = explain_in(session, obj, field)
    assert len(exp.fields) == 1, [f.shown for f in exp.fields]
    return exp.fields[0]


S = "environments/base/saas.yaml"
V = "environments/base/vms.yaml"
P = "environments/prod/services.yaml"
C = "environments/prod/checkout.yaml"
E = "environments/prod/env.yaml"
STRIPE_80 = "EnvoyCluster/envoy/clusters.json/outbound|80||api.stripe.com"

# (object as a user writes it, field, value, origin, positioned chain)
CASES: list[tuple[str, str, Any, str, list[str]]] = [
    # base only
    ("DestinationRule/egress/payments-stripe", "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection",
     100, "declared", [f"set {S}:21:65"]),
    # the prod overlay overrides base: the overlay wins, base is listed under it
    ("DestinationRule/egress/payments-stripe", "spec.trafficPolicy.connectionPool.tcp.maxConnections",
     1000, "declared", [f"set {P}:32:31", f"over {S}:20:31"]),
    # written by the overlay alone
    ("dr/payments-stripe", "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
     20, "declared", [f"set {P}:38:29"]),
    # portLevel merged by port: the overlay's port 80 entry over base's
    ("dr/payments-stripe", "spec.trafficPolicy.portLevelSettings[port.number=80].connectionPool.tcp.maxConnections",
     1000, "declared", [f"set {P}:42:35", f"over {S}:27:35"]),
    # ... and what only base's port 80 entry says survives the merge
    ("dr/payments-stripe", "spec.trafficPolicy.portLevelSettings[port.number=80].tls.sni",
     "api.stripe.com", "declared", [f"set {S}:31:18"]),
    # the same item by position, as findings and waivers name it
    ("dr/payments-stripe", "spec.trafficPolicy.portLevelSettings[0].tls.mode", "SIMPLE", "declared",
     [f"set {S}:30:19"]),
    # ports keyed by number
    ("se/payments-stripe", "spec.ports[number=80].targetPort", 443, "declared", [f"set {S}:14:21"]),
    # a port name nobody wrote: derived from protocol and number
    ("se/maps-google", "spec.ports[number=443].name", "https-443", "derived", [f"from {S}:42:19", f"from {S}:41:17"]),
    # endpoints keyed by address: the one the prod overlay adds
    ("we/orders-db-pg-3", "spec.address", "10.21.1.10", "declared", [f"set {P}:52:18"]),
    ("WorkloadEntry/egress/orders-db-pg-1", "spec.weight", 3, "declared", [f"set {V}:21:17"]),
    # subsets keyed by name
    ("dr/orders-db", "spec.subsets[name=replica].labels.role", "replica", "declared", [f"set {V}:33:24"]),
    ("dr/orders-db", "spec.trafficPolicy.connectionPool.tcp.maxConnections", 400, "declared",
     [f"set {P}:61:31", f"over {V}:37:27"]),
    # the namespace comes from env.yaml (the service declares none)
    ("DestinationRule/egress/payments-stripe", "metadata.namespace", "egress", "env", [f"env {E}:3:12"]),
    # a template default: no declaration behind it
    ("se/maps-google", 'metadata.labels["app.kubernetes.io/managed-by"]', "meshc", "template", []),
    ("se/maps-google", "metadata.labels.app.kubernetes.io/managed-by", "meshc", "template", []),
    # location as written, mapped to Istio's enum
    ("se/payments-stripe", "spec.location", "MESH_EXTERNAL", "declared", [f"set {S}:8:15"]),
    # env.yaml's trust domain in a principal, with the consumers it is made from
    ("ap/istio-system/maps-google-egress", "spec.rules[0].from[0].source.notPrincipals[0]",
     "prod.mesh.example.com/ns/checkout/sa/cart", "derived", [f"from {P}:74:7", f"env {E}:4:14"]),
    # an object of the whole environment: a consumer namespace's Sidecar
    ("Sidecar/checkout/meshc-egress", "spec.outboundTrafficPolicy.mode", "REGISTRY_ONLY", "environment",
     [f"env {E}:11:26"]),
    # an Envoy cluster of the shared clusters file: its DestinationRule's port-level field, then the layers
    (STRIPE_80, "connect_timeout", "1s", "declared", [f"via set {P}:42:57", f"via over {S}:27:56"]),
    # the brief form (Cluster/envoy/NAME) of the port-443 cluster: the service-level pool applies
    ("Cluster/envoy/outbound|443||api.stripe.com", "circuit_breakers.thresholds[0].max_connections", 1000,
     "declared", [f"via set {P}:32:31", f"via over {S}:20:31"]),
    (STRIPE_80, "circuit_breakers.thresholds[0].max_retries", 4294967295, "default", []),
    (STRIPE_80, "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value", 443,
     "declared", [f"via set {S}:14:21"]),
    # iptables: a VM host's inbound port, from its endpoint's ports
    ("IptablesChain/iptables/checkout-batch-batch-1.rules/nat/MESHC_INBOUND", "rules[1]",
     "-A MESHC_INBOUND -p tcp --dport 8080 -j MESHC_IN_REDIRECT", "declared", [f"set {C}:23:16"]),
    # DNS capture to the nameservers of the VM's network (env.yaml vm.dnsServersByNetwork)
    ("IptablesChain/iptables/orders-db-pg-3.rules/nat/MESHC_OUTPUT_DNS", "rules[0]",
     "-A MESHC_OUTPUT_DNS -p tcp --dport 53 -d 10.30.0.2/32 -j REDIRECT --to-ports 15053", "env",
     [f"env {E}:25:15", f"env {E}:28:22"]),
    # the egress allow-list: env.yaml vm.egressAllowList and the declared address it lets through
    ("chain/orders-db-pg-1/filter/MESHC_EGRESS", "rules[8]",
     "-A MESHC_EGRESS -p tcp -m conntrack --ctorigdst 10.20.0.100/32 --ctorigdstport 5432 -j RETURN", "declared",
     [f"env {E}:29:20", f"from {V}:8:17"]),
    # excluded inbound ports nobody wrote: meshc's (istioctl's) default
    ("IptablesChain/iptables/orders-db-pg-1.rules/nat/MESHC_INBOUND", "rules[1]",
     "-A MESHC_INBOUND -p tcp --dport 22 -j RETURN", "default", []),
]


@pytest.mark.parametrize(("obj", "field", "value", "origin", "expected"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_field_is_traced_to_the_lines_that_wrote_it(prod: Session, obj: str, field: str, value: Any, origin: str,
                                                    expected: list[str]) -> None:
    f = one(prod, obj, field)
    assert f.value == value
    assert f.origin == origin
    assert chain(f) == expected


def test_the_winning_layer_is_marked_and_the_overridden_value_shown(prod: Session) -> None:
    f = one(prod, "DestinationRule/egress/payments-stripe", "spec.trafficPolicy.connectionPool.tcp.maxConnections")
    won, over = f.steps[0], f.steps[1]
    assert (won.role, won.wins, won.layer, won.text) == ("set", True, "prod overlay", "overrides payments-stripe")
    assert (over.role, over.wins, over.layer, over.value) == ("over", False, "base", 200)
    assert f.decl_path == ("trafficPolicy", "connectionPool", "tcp", "maxConnections")
    assert f.steps[-1].text == "destinationrule.json.j2 (spec.trafficPolicy <- trafficPolicy)"


def test_a_transformed_value_shows_what_was_written(prod: Session) -> None:
    f = one(prod, "dr/payments-stripe", "spec.trafficPolicy.portLevelSettings[port.number=80].tls.mode")
    assert f.value == "SIMPLE" and f.steps[0].value == "simple" and not f.steps[0].quiet


def test_one_field_reads_in_a_terminal(prod: Session) -> None:
    text = render_text(explain_in(prod, "DestinationRule/egress/payments-stripe",
                                  "spec.trafficPolicy.connectionPool.tcp.maxConnections"))
    assert text == (
        "DestinationRule/egress/payments-stripe  spec.trafficPolicy.connectionPool.tcp.maxConnections = 1000\n"
        "  set by   environments/prod/services.yaml:32:31  overrides payments-stripe (prod overlay)   <- wins\n"
        "  over     environments/base/saas.yaml:20:31      services payments-stripe (base): 200\n"
        "  template destinationrule.json.j2 (spec.trafficPolicy <- trafficPolicy)\n"
        "checks: not run (--no-checks)\n")


def test_the_whole_object_lists_every_leaf_once_grouped(prod: Session) -> None:
    exp = explain_in(prod, "dr/payments-stripe")
    shown = [f.shown for f in exp.fields]
    assert len(shown) == len(set(shown)) == 27
    text = render_text(exp)
    assert text.startswith("DestinationRule/egress/payments-stripe  (prod, service payments-stripe, "
                           "egress/payments-stripe.yaml)\n")
    assert ("  maxConnections = 1000  environments/prod/services.yaml:32:31 (prod overlay); "
            "over environments/base/saas.yaml:20:31 (base: 200)\n") in text
    assert "\nspec.trafficPolicy.connectionPool.tcp\n" in text


def test_a_field_prefix_explains_the_leaves_under_it(prod: Session) -> None:
    exp = explain_in(prod, "dr/payments-stripe", "spec.trafficPolicy.connectionPool.tcp")
    assert [f.shown for f in exp.fields] == ["spec.trafficPolicy.connectionPool.tcp.connectTimeout",
                                             "spec.trafficPolicy.connectionPool.tcp.maxConnections"]


def test_diff_names_and_paths_paste_into_explain(tmp_path: Path) -> None:
    """Every object and field path `meshc diff` prints (Istio objects, Envoy clusters, iptables
    chains) is accepted as written, and explains the value the diff shows on the head side."""
    base = copy_example_estate(tmp_path / "base")
    head = copy_example_estate(tmp_path / "head")
    services = head / "environments/prod/services.yaml"
    services.write_text(services.read_text().replace("tcp: {maxConnections: 1000,", "tcp: {maxConnections: 1500,"))
    env = head / "environments/prod/env.yaml"
    env.write_text(env.read_text().replace("dnsServers: [10.20.0.2, 10.20.0.3]", "dnsServers: [10.20.0.2, 10.20.0.4]"))
    changes = run(DiffRequest(str(base), str(head), head, envs=("prod",))).envs["prod"]
    session = open_env(head, "prod", checks=False)
    kinds = set()
    for item in changes.modified:
        kinds.add(item.id.kind)
        for change in item.changes:
            f = one(session, str(item.id), change.where)
            assert f.shown == change.where
            assert f.value == change.after, (item.id, change.where)
    assert {"DestinationRule", "EnvoyCluster", "IptablesChain"} <= kinds


def test_forgiving_names(prod: Session) -> None:
    for name in ("DestinationRule/egress/payments-stripe", "destinationrule/egress/payments-stripe",
                 "DR/payments-stripe", "destinationrules/payments-stripe",
                 "destinationrule.networking.istio.io/payments-stripe"):
        assert str(explain_in(prod, name, "spec.host").id) == "DestinationRule/egress/payments-stripe"
    with pytest.raises(ExplainError, match="'payments-stripe' names 2 objects") as err:
        explain_in(prod, "payments-stripe")  # a bare name, as `kubectl get se,dr` lists both
    assert err.value.hint == ("name one of them: DestinationRule/egress/payments-stripe, "
                              "ServiceEntry/egress/payments-stripe")
    assert str(explain_in(prod, "dr/payments-stripe", "spec.host", namespace="egress").id).endswith("payments-stripe")
    assert str(explain_in(prod, "orders-db-pg-3").id) == "WorkloadEntry/egress/orders-db-pg-3"
    for name in ("Cluster/envoy/outbound|80||api.stripe.com", "cluster/outbound|80||api.stripe.com",
                 "EnvoyCluster/envoy/clusters.json/outbound|80||api.stripe.com"):
        exp = explain_in(prod, name, "connect_timeout")
        assert (str(exp.id), exp.file) == (STRIPE_80, "envoy/clusters.json")
    chain_id = "IptablesChain/iptables/orders-db-pg-1.rules/nat/MESHC_OUTPUT"
    for name in (chain_id, "chain/orders-db-pg-1.rules/nat/MESHC_OUTPUT", "iptables/orders-db-pg-1/nat/MESHC_OUTPUT"):
        assert str(explain_in(prod, name).id) == chain_id


def test_field_paths_in_every_form_the_diff_or_a_person_writes() -> None:
    body = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "meshc"}},
            "spec": {"ports": [{"number": 80, "name": "http"}, {"number": 443, "name": "https"}],
                     "hosts": ["a.example.com", "b.example.com"]}}
    assert resolve_field(body, "spec.ports[number=443].name") == ("spec", "ports", 1, "name")
    assert resolve_field(body, "spec.ports[name=https]") == ("spec", "ports", 1)
    assert resolve_field(body, "spec.ports[1].name") == ("spec", "ports", 1, "name")
    assert resolve_field(body, "spec.ports[-1]") == ("spec", "ports", 1)
    assert resolve_field(body, "spec.hosts[b.example.com]") == ("spec", "hosts", 1)
    for text in ('metadata.labels["app.kubernetes.io/managed-by"]', "metadata.labels.app.kubernetes.io/managed-by",
                 "metadata.labels[app.kubernetes.io/managed-by]"):
        assert resolve_field(body, text) == ("metadata", "labels", "app.kubernetes.io/managed-by")


@pytest.mark.parametrize(("args", "message", "fix"), [
    (["prd", "dr/payments-stripe"], "unknown environment 'prd'; did you mean 'prod'?", "known environments:"),
    (["prod", "dr/payments-strip"], "no DestinationRule 'payments-strip' in prod; did you mean 'payments-stripe'?",
     "DestinationRule/egress/payments-stripe"),
    (["prod", "destinatonrule/payments-stripe"], "unknown kind 'destinatonrule' in prod; did you mean "
                                                 "'DestinationRule'?", "kinds here:"),
    (["prod", "dr/payments-stripe", "spec.trafficPolicy.connectionPool.tcp.maxConection"],
     "DestinationRule/egress/payments-stripe has no field 'maxConection' at spec.trafficPolicy.connectionPool.tcp; "
     "did you mean 'maxConnections'?", "fields there: connectTimeout, maxConnections"),
    (["prod", "dr/payments-stripe", "spec.trafficPolicy.portLevelSettings[port.number=81]"],
     "has no field '[port.number=81]' at spec.trafficPolicy.portLevelSettings", "[port.number=80]"),
    (["prod", "dr/payments-stripe", "spec.host.x"], "has no field 'x' at spec.host", "is a value"),
    (["prod", "dr/payments-stripe", "spec[[["], "cannot read the field path", "spec.ports[number=80].name"),
    (["prod", "IptablesChain/nat/MESHC_OUTPUT"], "names 7 objects in prod",
     "IptablesChain/iptables/orders-db-pg-1.rules/nat/MESHC_OUTPUT"),
    (["prod", "Cluster/envoy/outbound|80||api.strip.com"], "did you mean", "EnvoyCluster/envoy/clusters.json/"),
    (["prod", "nothing-here"], "does not name an object", "KIND/NAMESPACE/NAME"),
])
def test_user_errors_exit_2_with_the_fix(estate: Path, args: list[str], message: str, fix: str) -> None:
    result = CliRunner().invoke(explain_command, ["-C", str(estate), "--no-checks", *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.stderr and "    fix: " in result.stderr and fix in result.stderr
    assert "Traceback" not in result.output


def test_json_is_stable_and_documented(estate: Path) -> None:
    result = CliRunner().invoke(explain_command, ["-C", str(estate), "--no-checks", "--format", "json", "prod",
                                                  "DestinationRule/egress/payments-stripe",
                                                  "spec.trafficPolicy.connectionPool.tcp.maxConnections"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "meshc.explain/v1" and doc["environment"] == "prod"
    assert doc["object"] == {"kind": "DestinationRule", "namespace": "egress", "name": "payments-stripe",
                             "id": "DestinationRule/egress/payments-stripe", "file": "egress/payments-stripe.yaml",
                             "service": "payments-stripe", "alsoIn": []}
    assert doc["checks"] == {"ran": False, "note": "not run (--no-checks)"}
    (field,) = doc["fields"]
    assert field["path"] == field["indexPath"] == "spec.trafficPolicy.connectionPool.tcp.maxConnections"
    assert (field["value"], field["origin"], field["declarationPath"]) == (
        1000, "declared", "trafficPolicy.connectionPool.tcp.maxConnections")
    assert field["chain"][:2] == [
        {"role": "set", "text": "overrides payments-stripe", "file": P, "line": 32, "col": 31,
         "layer": "prod overlay", "value": 1000, "wins": True},
        {"role": "over", "text": "services payments-stripe", "file": S, "line": 20, "col": 31, "layer": "base",
         "value": 200}]
    assert field["via"] is None and field["findings"] == [] and doc["findings"] == []
    again = CliRunner().invoke(explain_command, ["-C", str(estate), "--no-checks", "--format", "json", "prod",
                                                 "DestinationRule/egress/payments-stripe",
                                                 "spec.trafficPolicy.connectionPool.tcp.maxConnections"])
    assert again.stdout == result.stdout


def test_a_waived_finding_is_shown_at_its_field_with_the_waiver(estate: Path) -> None:
    exp = explain(estate, "prod", "dr/payments-stripe", "spec.trafficPolicy.portLevelSettings[port.number=80].tls.sni",
                  today=TODAY)
    assert exp.checks_ran
    (hit,) = exp.fields[0].checks
    assert (hit.code, hit.waived, hit.path) == ("I351", True, "spec.trafficPolicy.portLevelSettings[0].tls")
    assert where(hit.position) == f"{S}:30:13"
    assert hit.waiver is not None and (where(hit.waiver.position), hit.waiver.owner) == ("waivers.yaml:3:5",
                                                                                         "team-payments")
    # the Envoy cluster's TLS comes from that field: the finding follows it there
    envoy = explain(estate, "prod", STRIPE_80, "transport_socket.typed_config.sni", today=TODAY)
    assert envoy.fields[0].via is not None and [h.code for h in envoy.fields[0].via[1].checks] == ["I351"]
    assert "waiver waivers.yaml:3:5 (team-payments, until 2027-06-30)" in render_text(envoy)


TINY_BASE = """\
services:
  - name: billing
    hosts: [billing.example.com]
    resolution: static
    ports:
      - {number: 443, protocol: TLS}
    endpoints:
      - address: 10.0.0.1
        weight: 1
      - address: 10.0.0.2
        weight: 1
  - name: ledger
    hosts: [ledger.example.com]
    resolution: dns
    ports:
      - {number: 80, protocol: HTTP, targetPort: 443}
    tls: {mode: simple, sni: ledger.example.com}
"""
TINY_OVERLAY = """\
overrides:
  - name: billing
    endpoints:
      - address: 10.0.0.2
        weight: 5
"""


def _tiny(root: Path, waiver: str = "") -> Path:
    (root / "environments/base").mkdir(parents=True)
    (root / "environments/dev").mkdir()
    (root / "environments/base/billing.yaml").write_text(TINY_BASE)
    (root / "environments/dev/env.yaml").write_text("name: dev\nnamespace: egress-dev\n")
    (root / "environments/dev/services.yaml").write_text(TINY_OVERLAY)
    (root / "meshc.yaml").write_text("waivers: waivers.yaml\n" if waiver else "")
    if waiver:
        (root / "waivers.yaml").write_text(waiver)
    return root


def test_a_tiny_estate_endpoints_merged_by_address_and_defaults(tmp_path: Path) -> None:
    session = open_env(_tiny(tmp_path), "dev", checks=False)
    weight = one(session, "se/billing", "spec.endpoints[address=10.0.0.2].weight")
    assert weight.value == 5 and chain(weight) == [
        "set environments/dev/services.yaml:5:17", "over environments/base/billing.yaml:11:17"]
    kept = one(session, "se/billing", "spec.endpoints[address=10.0.0.1].weight")
    assert chain(kept) == ["set environments/base/billing.yaml:9:17"]
    location = one(session, "se/billing", "spec.location")
    assert (location.value, location.origin) == ("MESH_EXTERNAL", "default")
    assert location.steps[0].text.startswith("location omitted: external (MESH_EXTERNAL) is the default")
    name = one(session, "se/billing", "spec.ports[number=443].name")
    assert (name.value, name.origin) == ("tls-443", "derived")
    namespace = one(session, "se/billing", "metadata.namespace")
    assert chain(namespace) == ["env environments/dev/env.yaml:2:12"]


def test_a_tiny_estate_with_a_waiver_and_an_unwaived_finding(tmp_path: Path) -> None:
    waiver = ("waivers:\n  - code: I350\n    env: dev\n    object: DestinationRule/*/ledger\n"
              "    path: spec.trafficPolicy.tls\n    owner: team-ledger\n    reason: public CA\n"
              "    expires: 2027-01-31\n")
    root = _tiny(tmp_path, waiver)
    exp = explain(root, "dev", "dr/ledger", "spec.trafficPolicy.tls.sni", today=TODAY)
    (hit,) = exp.fields[0].checks
    assert (hit.code, hit.severity, hit.waived) == ("I350", "warning", True)
    assert hit.waiver is not None and where(hit.waiver.position) == "waivers.yaml:2:5"
    assert where(hit.position) == "environments/base/billing.yaml:17:10"
    # expired: the finding stands, with no waiver
    late = explain(root, "dev", "dr/ledger", "spec.trafficPolicy.tls.sni", today=dt.date(2027, 2, 1))
    (hit,) = late.fields[0].checks
    assert (hit.code, hit.waived, hit.waiver) == ("I350", False, None)
    text = render_text(late)
    assert "  check    I350 warning: TLS SIMPLE without caCertificates" in text
    assert text.endswith("checks: ran, 1 finding(s) here\n")


PASSTHROUGH = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ledger-timeout
spec:
  hosts: [ledger.example.com]
  http:
    - timeout: 5s
      route:
        - destination: {host: ledger.example.com}
"""


def test_a_pass_through_object_is_kept_verbatim_from_its_line(tmp_path: Path) -> None:
    root = _tiny(tmp_path)
    (root / "environments/dev/passthrough").mkdir()
    (root / "environments/dev/passthrough/extra.yaml").write_text(PASSTHROUGH)
    session = open_env(root, "dev", checks=False)
    exp = explain_in(session, "vs/ledger-timeout")
    assert [f"{s.role} {where(s.position)}" for s in exp.summary] == [
        "verbatim environments/dev/passthrough/extra.yaml:1:1"]
    timeout = one(session, "VirtualService/egress-dev/ledger-timeout", "spec.http[0].timeout")
    assert (timeout.value, timeout.origin, chain(timeout)) == (
        "5s", "verbatim", ["verbatim environments/dev/passthrough/extra.yaml:8:16"])
    namespace = one(session, "vs/ledger-timeout", "metadata.namespace")  # filled in: the document has none
    assert (namespace.origin, chain(namespace)) == ("env", ["env environments/dev/env.yaml:2:12",
                                                            "verbatim environments/dev/passthrough/extra.yaml:1:1"])


def test_a_compile_warning_is_shown_at_the_declared_field_without_the_checks(tmp_path: Path) -> None:
    root = _tiny(tmp_path)
    base = root / "environments/base/billing.yaml"
    base.write_text(base.read_text().replace("        weight: 1\n", "        weight: 1\n        serviceAccount: billing\n", 1))
    session = open_env(root, "dev", checks=False)
    exp = explain_in(session, "se/billing", "spec.endpoints[address=10.0.0.1]")
    assert exp.asked == "spec.endpoints[address=10.0.0.1]"
    (account,) = [f for f in exp.fields if f.path[-1] == "serviceAccount"]
    (hit,) = account.checks
    assert (hit.code, hit.path, where(hit.position)) == ("V027", "endpoints[0].serviceAccount",
                                                         "environments/base/billing.yaml:10:25")
    assert render_text(exp).endswith("checks: not run (--no-checks); 1 compile finding(s) here\n")


def test_checks_are_optional_and_say_so(prod: Session) -> None:
    exp = explain_in(prod, "se/payments-stripe", "spec.hosts[0]")
    assert not exp.checks_ran and render_text(exp).endswith("checks: not run (--no-checks)\n")


def test_explanation_is_deterministic(estate: Path) -> None:
    first = explain(estate, "prod", "dr/payments-stripe", checks=False)
    second = explain(estate, "prod", "dr/payments-stripe", checks=False)
    assert isinstance(first, Explanation) and first.to_json() == second.to_json()


def test_a_name_in_another_namespace_says_where_it_is(estate: Path) -> None:
    """Found by a new user's trial: `-n` with a wrong namespace suggested the very same name."""
    result = CliRunner().invoke(explain_command, ["-C", str(estate), "--no-checks", "prod", "dr/payments-stripe",
                                                  "-n", "wrongns"])
    assert result.exit_code == 2
    assert "it is in 'egress'" in result.output and "did you mean 'payments-stripe'" not in result.output


def test_list_items_are_suggested_by_their_key_only(estate: Path) -> None:
    result = CliRunner().invoke(explain_command, ["-C", str(estate), "--no-checks", "prod", "dr/payments-stripe",
                                                  "spec.trafficPolicy.portLevelSettings[port=81]"])
    assert result.exit_code == 2
    assert "fields there: [0], [port.number=80]" in result.output, result.output
