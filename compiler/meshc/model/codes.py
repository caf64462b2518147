"""Every diagnostic code meshc can emit, in one table: code -> family, default severity, summary.

A code is a letter (its family: the stage or input that reports it) and three digits. A code is
never reused for a second meaning, and its severity is fixed, so CI output, waivers and docs can
key on the code alone. The table is data only: the modules that emit a code write it as a literal
(`Diagnostic("V001", ...)`, `chk.add("V001", ...)`, `webhook_error("I101", ...)`), and
tests/test_codes.py holds the table and the package together, both ways:

* every code-shaped literal in the package is in `CODES`, and every code in `CODES` is emitted
  somewhere, by a module of its family (`Family.modules`);
* every code has a row in a code table of docs/ (`Family.docs`), with this severity and this
  summary, and every documented code is in `CODES`;
* every code has a test that makes meshc emit it (tests/fixtures/codes/<code>.yaml, or the rule
  tables of tests/test_rules.py for the Istio families I and A), at the position and with a fix.

The Istio families (I, A, and meshc's egress-path family G) also have their own registry with sources and fixes:
`meshc.check.istio.ALL_RULES` (rows here repeat its code, severity and title; the test checks).

Adding a code: add the row here (in its family, in code order), emit it, add the row to the
family's docs table, and add tests/fixtures/codes/<code>.yaml (the failing test says what to write).
Retiring a code: delete its row and docs row; never give its number to another meaning
(`RETIRED` keeps the numbers that once meant something).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshc.model.diagnostics import Severity


@dataclass(frozen=True, slots=True)
class Family:
    """The codes sharing a letter: what they are about, which modules emit them, where they are documented."""

    letter: str
    name: str
    modules: tuple[str, ...]  # meshc modules (or packages) that emit the family's codes
    docs: str  # the docs page holding the family's code table


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    summary: str  # the meaning, exactly as the docs table row says it

    @property
    def family(self) -> Family:
        return FAMILIES[self.code[0]]


FAMILIES: dict[str, Family] = {f.letter: f for f in (
    Family("Y", "YAML: a file meshc reads is not plain YAML text",
           ("meshc.files.source", "meshc.front.load", "meshc.front.passthrough", "meshc.check.lint"),
           "docs/declarations.md"),
    Family("D", "declaration schema: a key, type or value the declaration schemas refuse",
           ("meshc.front.declschema", "meshc.front.load"), "docs/declarations.md"),
    Family("L", "loading: the shape of environments/", ("meshc.front.load", "meshc.front.passthrough"),
           "docs/declarations.md"),
    Family("M", "merging: base services and environment overrides", ("meshc.front.merge",), "docs/declarations.md"),
    Family("V", "validation: a declaration that Istio would reject or that would not do what it says",
           ("meshc.front.validate", "meshc.front.validate_tls", "meshc.front.validate_egress",
            "meshc.expand.services"), "docs/declarations.md"),
    Family("X", "templates: rendering the Istio objects", ("meshc.expand.services",), "docs/declarations.md"),
    Family("T", "VM iptables capture settings", ("meshc.proxy.iptables.validate", "meshc.proxy.vmcapture"),
           "docs/iptables.md"),
    Family("S", "check layer schema: the Istio CRDs' OpenAPI schema and CEL rules", ("meshc.check.schema",),
           "docs/checks.md"),
    Family("I", "check layer istio: istiod's validating-webhook rules", ("meshc.check.istio",), "docs/checks.md"),
    Family("A", "check layer istio: `istioctl analyze` analyzers across objects", ("meshc.check.istio.analyzers",),
           "docs/checks.md"),
    Family("R", "check layer release: fields and behaviour changes against the target Istio releases",
           ("meshc.check.release",), "docs/checks.md"),
    Family("G", "check layer istio: meshc's analyzers of the egress path (gateway, waypoint, who may bypass them)",
           ("meshc.check.istio.egress",), "docs/checks.md"),
    Family("P", "check layer cue: organisation policies", ("meshc.check.cue",), "docs/policies.md"),
    Family("E", "the emitted Envoy configuration", ("meshc.check.envoy", "meshc.proxy.workloads"), "docs/envoy.md"),
    Family("W", "waivers", ("meshc.check.waivers",), "docs/checks.md"),
    Family("C", "project settings (meshc.yaml) and the inputs of the check layers",
           ("meshc.front.project", "meshc.check.layers", "meshc.check.cue", "meshc.api"), "docs/declarations.md"),
    Family("B", "build: the output folder and meshc's working folders", ("meshc.api", "meshc.emit"),
           "docs/declarations.md"),
    Family("K", "the build cache", ("meshc.api",), "docs/declarations.md"),
    Family("F", "foreign YAML: Istio objects read from outside the declarations (import, drift) or kept verbatim "
                "(pass-through)", ("meshc.adopt", "meshc.front.passthrough"), "docs/import.md"),
)}

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

_ROWS: tuple[tuple[str, Severity, str], ...] = (
    # Y: YAML (meshc.files.source; Y001 also front.load and check.lint)
    ("Y001", E, "file cannot be read"),
    ("Y002", E, "binary or not UTF-8"),
    ("Y003", E, "YAML syntax error"),
    ("Y004", E, "duplicate key in a mapping"),
    ("Y005", E, "alias expansion too large (alias bomb)"),
    ("Y006", E, "non-string mapping key"),
    ("Y007", E, "unsupported YAML (merge keys, tags on any node)"),
    ("Y008", E, "a string Kubernetes' tooling cannot carry through a bundle (DEL, C1 controls, U+FFFE/U+FFFF, "
                "lone surrogates, several lines ending in U+2028/U+2029; keys `<<` or over 1,024 characters as "
                "JSON)"),
    ("Y009", INFO, "meshc lint: documents of kinds it does not check, counted per file (a `kind: List` is unwrapped)"),
    # D: declaration schema (meshc.front.declschema)
    ("D001", E, "unknown key (with did-you-mean)"),
    ("D002", E, "wrong type"),
    ("D003", E, "missing required key"),
    ("D004", E, "invalid value (enum, pattern, range, name that could escape the output directory)"),
    # L: loading environments/ (meshc.front.load)
    ("L001", E, "no or unknown environment"),
    ("L002", E, "env.yaml name differs from its directory"),
    ("L003", E, "`overrides:` in the base layer"),
    ("L004", W, "non-YAML file in an environment directory (ignored)"),
    ("L006", E, "a folder under environments/ without env.yaml (names it; suggests renaming env.yml)"),
    ("L007", W, "a declaration file that declares nothing (its services are gone from every environment it "
                "reaches)"),
    ("L008", E, "a link out of the repository, or a file name with control characters (docs/security.md)"),
    ("L009", E, "env.yaml proxy.connectTimeout or proxy.dnsRefreshRate is a duration Envoy refuses (0s, under "
                "1ms, past protobuf's limit)"),
    # M: merging layers (meshc.front.merge)
    ("M001", E, "service declared twice / base service redeclared in an environment"),
    ("M002", E, "override of a service no layer declares"),
    ("M003", E, "`$patch: delete` of an item the service does not have"),
    # V: validating one service (meshc.front.validate, validate_tls; V030 meshc.expand). V026: retired.
    ("V001", E, "host without a dot"),
    ("V002", E, "invalid host (bare or partial wildcard, IP literal, not a DNS name)"),
    ("V003", E, "wildcard host with DNS resolution and no endpoints"),
    ("V004", E, "duplicate port number or name"),
    ("V005", E, "endpoints with resolution none"),
    ("V006", E, "more than one endpoint with dns-round-robin"),
    ("V007", E, "non-IP endpoint with resolution static"),
    ("V008", E, "endpoint neither IP nor DNS name"),
    ("V009", E, "endpoint port name that is not a service port"),
    ("V010", E, "endpoint network not declared in env.yaml"),
    ("V011", E, "WorkloadEntries for an external service"),
    ("V012", E, "credentialName without clientSelector (would send plaintext)"),
    ("V013", E, "mutual TLS without a client certificate"),
    ("V014", E, "insecureSkipVerify with verification settings"),
    ("V015", E, "TLS origination on an HTTPS/TLS port (TLS in TLS)"),
    ("V016", W, "TLS origination towards port 80"),
    ("V017", W, "TLS origination on a TCP port without sni"),
    ("V018", E, "portLevel entry for an undeclared port"),
    ("V019", E, "duration under 1ms or not whole milliseconds"),
    ("V020", E, "several hosts with a non-HTTP/TLS port and resolution other than none"),
    ("V021", E, "CIDR address with DNS resolution"),
    ("V022", E, "address neither IP nor CIDR"),
    ("V023", E, "duplicate endpoint address"),
    ("V024", E, "malformed unix socket endpoint"),
    ("V025", E, "two endpoints produce the same WorkloadEntry name"),
    ("V027", W, "serviceAccount on an external service's endpoint (no mTLS)"),
    ("V028", E, "a label key or value Kubernetes would refuse (endpoint and subset labels, clientSelector, "
                "selector)"),
    ("V029", E, "owner and description over the API server's 256 KiB annotation limit"),
    ("V030", E, "an emitted object over 1.5 MiB (etcd's request limit)"),
    ("V031", E, "a declaration that expands past 1,024 Envoy clusters or 65,536 endpoint entries (Limits, above)"),
    ("V032", W, "a failoverPriority label no endpoint of the service carries (it orders nothing)"),
    ("V033", W, "a service-level connectionPool or outlierDetection a portLevel entry shadows (never applies to "
                "its port)"),
    ("V034", E, "an egress path the environment cannot provide (gateway or waypoint settings missing from env.yaml, "
                "the other data plane, a port the gateway's Service does not expose)"),
    ("V035", E, "a declaration the egress path cannot carry (UDP, clientSelector through the gateway; exportTo, "
                "wildcard hosts, mutual TLS with BackendTLSPolicy through a waypoint)"),
    ("V036", E, "a VM workload in an ambient environment"),
    ("V037", E, "a consumer env.yaml does not list (namespace or service account), or listed twice"),
    ("V038", E, "consumers in an ambient environment without egress: waypoint"),
    ("V039", W, "consumers that cannot be checked: env.yaml lists no namespaces"),
    ("V040", W, "a consumer a declared exportTo hides the service from"),
    # X: templates (meshc.expand.services)
    ("X001", E, "a template failed while rendering (undefined value, unknown test, value printed without "
                "`| json`)"),
    ("X002", E, "template output is not a JSON object with kind and metadata"),
    ("X003", E, "a template cannot be compiled: syntax error, unknown filter or test (only `json`; tests "
                "defined, none, mapping, sequence)"),
    # T: VM iptables capture (meshc.proxy.iptables.validate, reported by meshc.proxy.vmcapture)
    ("T001", E, "workload name is not a DNS-1123 subdomain (it names the file <workload>.rules)"),
    ("T002", E, "port outside 1..65535"),
    ("T003", E, "not an IPv4 address or CIDR (DNS servers must be plain addresses)"),
    ("T004", E, "`*` where it is not allowed (exclude CIDRs, DNS servers, destinations) or mixed with other "
                "include CIDRs"),
    ("T005", E, "IPv6 address: meshc writes IPv4 (iptables) rules only"),
    ("T006", E, "destination protocol is not tcp or udp"),
    ("T007", E, "proxy uid/gid outside 0..4294967294"),
    ("T008", W, "proxy uid/gid 0: everything running as root would bypass capture"),
    ("T009", W, "duplicate entry (ignored)"),
    ("T010", W, "CIDR has host bits set (the network address is used)"),
    ("T011", W, "port both included and excluded (inbound: the include wins; outbound: the exclusion wins)"),
    ("T012", W, "an Istio proxy port is listed for inbound capture (would loop or hide the proxy)"),
    ("T013", W, "empty egress allow-list: only DNS, loopback and the proxy may be reached"),
    ("T014", W, "DNS servers given but neither DNS capture nor the allow-list uses them"),
    ("T015", W, "DNS capture without DNS servers: no DNS is captured (declare vm.dnsServers)"),
    ("T016", E, "vm.dnsServersByNetwork names a network env.yaml does not declare"),
    # S: check layer schema (meshc.check.schema)
    ("S001", E, "OpenAPI schema violation (unknown field, type, enum, range, length, required, oneOf...)"),
    ("S002", E, "an `x-kubernetes-validations` (CEL) rule evaluated to false (its message)"),
    ("S003", E, "a CEL rule could not be compiled or evaluated (the API server rejects the object)"),
    ("S004", E, "duplicate key in an `x-kubernetes-list-type: map` list, or duplicate item in a `set`"),
    ("S005", E, "no CRD serves the object's apiVersion and kind"),
    # I: check layer istio, webhook rules (meshc.check.istio; registry: ALL_RULES)
    ("I001", E, "annotation istio.io/dry-run is only allowed on AuthorizationPolicy"),
    ("I002", E, "annotation internal.istio.io/webhook-always-reject is present"),
    ("I003", E, "internal parent annotation set by hand"),
    ("I010", E, "exportTo entry is not '.', '*' or a namespace name"),
    ("I011", E, "duplicate exportTo entry ('.' and the own namespace count as the same)"),
    ("I012", E, "exportTo '*' combined with other entries"),
    ("I013", E, "exportTo '~' combined with other entries"),
    ("I014", E, "exportTo '~' on a kind other than ServiceEntry"),
    ("I020", E, "invalid label key"),
    ("I021", E, "invalid label value"),
    ("I030", E, "workload selector has an empty label key"),
    ("I031", E, "workload selector key or value contains '*'"),
    ("I032", W, "workload selector without labels selects every workload in the namespace"),
    ("I040", E, "port number outside 1..65535"),
    ("I041", E, "port name is not a DNS-1123 label"),
    ("I042", E, "unsupported protocol"),
    ("I050", E, "duration below 1ms, not whole milliseconds, or unparseable"),
    ("I101", E, "ServiceEntry has no hosts"),
    ("I102", E, "ServiceEntry host is the bare wildcard '*'"),
    ("I103", E, "ServiceEntry host is not a valid (wildcard) domain"),
    ("I104", W, "partial wildcard host (e.g. *foo.com) outside DYNAMIC_DNS"),
    ("I105", E, "both workloadSelector and endpoints are set"),
    ("I106", E, "address is not an IP or CIDR block"),
    ("I107", E, "CIDR addresses with resolution other than NONE/STATIC"),
    ("I108", E, "null entry in ports"),
    ("I109", E, "two ports with the same name"),
    ("I110", E, "two ports with the same number"),
    ("I111", W, "TCP or protocol-less port without addresses and without VIP auto-allocation"),
    ("I112", E, "resolution NONE with endpoints"),
    ("I113", W, "resolution NONE with workloadSelector"),
    ("I114", E, "STATIC ServiceEntry endpoint address is not an IP or unix socket"),
    ("I115", E, "endpoint ports key is not a port name of the ServiceEntry"),
    ("I116", E, "unix socket endpoint in a ServiceEntry without exactly one port"),
    ("I117", E, "DNS resolution without endpoints needs FQDN hosts (no wildcards)"),
    ("I118", E, "DNS_ROUND_ROBIN with more than one endpoint"),
    ("I119", W, "DNS ServiceEntry with addresses, a TCP port and several hosts"),
    ("I120", E, "DYNAMIC_DNS host is not a wildcard"),
    ("I121", E, "DYNAMIC_DNS with addresses"),
    ("I122", E, "DYNAMIC_DNS with endpoints"),
    ("I123", E, "DYNAMIC_DNS port protocol not HTTP, TLS, GRPC or HTTP2"),
    ("I124", E, "DYNAMIC_DNS MESH_INTERNAL ServiceEntry bound to a waypoint"),
    ("I125", E, "unsupported resolution"),
    ("I126", E, "several hosts with a port that is neither HTTP-family nor TLS (unset protocol counts)"),
    ("I127", E, "unknown location"),
    ("I128", E, "null entry in endpoints"),
    ("I201", E, "endpoint has neither address nor network"),
    ("I202", W, "endpoint without address is reached through its network's gateway"),
    ("I203", E, "unix socket address is not an absolute file path or @abstract name"),
    ("I204", E, "unix socket endpoint lists ports"),
    ("I205", E, "endpoint address is neither an IP nor a valid FQDN"),
    ("I301", E, "DestinationRule host is not a valid (wildcard) domain"),
    ("I302", E, "trafficPolicy without any field"),
    ("I303", E, "tunnel and proxyProtocol together"),
    ("I304", W, "outlierDetection.consecutiveErrors is deprecated and ignored"),
    ("I305", E, "consecutiveLocalOriginFailures without splitExternalLocalOriginErrors"),
    ("I306", E, "percentage outside 0..100"),
    ("I307", E, "connectionPool without tcp or http"),
    ("I308", E, "negative connection pool limit"),
    ("I309", E, "h2UpgradePolicy UPGRADE with useClientProtocol"),
    ("I310", E, "http2KeepAlive without interval or timeout"),
    ("I311", E, "consistentHash.httpCookie without name"),
    ("I312", E, "httpCookie attribute without name"),
    ("I313", E, "two httpCookie attributes with the same name"),
    ("I314", W, "consistentHash.minimumRingSize is deprecated"),
    ("I315", E, "minimumRingSize combined with ringHash or maglev"),
    ("I316", E, "maglev.tableSize missing, too large or not prime"),
    ("I317", E, "both localityLbSetting and zoneAwareLbSetting"),
    ("I318", E, "locality distribute and failover together"),
    ("I319", E, "locality failover with a region/zone/subzone label in failoverPriority"),
    ("I320", E, "zoneAwareLbSetting.failoverPriority holds a region/zone/subzone label"),
    ("I321", E, "locality weight outside 1..100"),
    ("I322", E, "locality weights of one distribute entry do not sum to 100"),
    ("I323", E, "locality string with misplaced '*' or an empty segment"),
    ("I324", E, "overlapping locality entries"),
    ("I325", W, "failover or failoverPriority without outlierDetection (failover never triggers)"),
    ("I326", E, "locality failover from and to are the same region"),
    ("I327", E, "locality failover from/to contains '/' or '*'"),
    ("I328", E, "warmup without duration"),
    ("I329", E, "warmup.aggression not greater than 0"),
    ("I330", E, "configmap:// credentialName unparseable or in another namespace"),
    ("I331", E, "insecureSkipVerify with SIMPLE and caCertificates/credentialName/subjectAltNames"),
    ("I332", E, "insecureSkipVerify with MUTUAL and caCertificates/subjectAltNames"),
    ("I333", E, "credentialName together with certificate/key/CA/CRL file fields"),
    ("I334", E, "MUTUAL without credentialName lacks clientCertificate or privateKey"),
    ("I335", E, "portLevelSettings entry null or without port"),
    ("I336", E, "portLevelSettings entry without loadBalancer/connectionPool/outlierDetection/tls"),
    ("I337", E, "tunnel.protocol not CONNECT or POST"),
    ("I338", E, "tunnel.targetHost is neither FQDN nor IP"),
    ("I339", E, "proxyProtocol.version not V1 or V2"),
    ("I340", E, "null entry in subsets"),
    ("I341", E, "two subsets with the same name"),
    ("I342", E, "subset name empty or not a DNS-1123 label"),
    ("I343", E, "DestinationRule with workloadSelector exported beyond its own namespace"),
    ("I344", E, "unknown enum value"),
    ("I350", W, "TLS SIMPLE/MUTUAL without caCertificates, or with credentialName but no workloadSelector "
                "(destination level)"),
    ("I351", W, "TLS SIMPLE/MUTUAL without caCertificates, or with credentialName but no workloadSelector "
                "(port level)"),
    # A: check layer istio, analyzers across objects (meshc.check.istio.analyzers)
    ("A401", W, "two ServiceEntries visible in a common namespace declare the same host and port"),
    ("A402", W, "same host and port declared with different protocols by visible ServiceEntries"),
    ("A403", W, "DestinationRule host matches no ServiceEntry visible to its namespace"),
    ("A404", INFO, "DestinationRule host matches no ServiceEntry but looks like a Kubernetes Service"),
    ("A405", W, "TCP or protocol-less port on a ServiceEntry without addresses and without an auto-allocated VIP"),
    ("A406", E, "DestinationRule subset labels select no endpoint of the service"),
    ("A407", W, "WorkloadEntry is selected by no ServiceEntry or Kubernetes Service in its namespace"),
    ("A408", E, "the same kind/namespace/name is defined twice"),
    ("A409", W, "several DestinationRules for one host in one namespace are merged"),
    ("A410", INFO, "Kubernetes Service port name without a protocol prefix (and no appProtocol)"),
    # R: check layer release (meshc.check.release; facts in data/istio-releases.yaml)
    ("R001", E, "an object uses a field or value the lowest target Istio release does not have (`istio:` in "
                "meshc.yaml)"),
    ("R002", W, "the target Istio releases lie on both sides of a behaviour change that touches a field the object "
                "uses"),
    # G: check layer istio, the egress path (meshc.check.istio.egress; registry: ALL_RULES)
    ("G001", E, "a VirtualService bound to a Gateway and the mesh disagrees with the Gateway's servers or with the "
                "ServiceEntry of its host"),
    ("G002", E, "the mesh route to the egress gateway names a subset no DestinationRule defines, or the subset's TLS "
                "disagrees with the Gateway server"),
    ("G003", E, "waypoint-bound ServiceEntry with a wildcard host (not DYNAMIC_DNS) or exportTo"),
    ("G004", W, "traffic can reach the external host without the egress gateway or waypoint"),
    ("G005", E, "a VM workload (WorkloadEntry, or ServiceEntry with workloadSelector or serviceAccount endpoints) in "
                "an ambient environment"),
    ("G006", W, "waypoint-bound ServiceEntry with resolution NONE (it becomes passthrough)"),
    # P: check layer cue (meshc.check.cue)
    ("P001", E, "an organisation policy is violated (the policy's message; see also: the constraint in the "
                ".cue file)"),
    # E: check layer envoy (meshc.check.envoy)
    ("E001", E, "Strict proto parse: unknown field, wrong type, bad enum value, unresolvable `@type`"),
    ("E002", E, "protoc-gen-validate (PGV) rules in Envoy's protos (`validate.rules`: `min_len`, `gt`, `lte`, "
                "required oneofs, ...)"),
    ("E003", E, "`envoy --mode validate -c FILE` failed"),
    ("E004", W, "a credentialName DestinationRule (clientSelector) that selects no VM workload group"),
    # W: waivers (meshc.check.waivers)
    ("W000", E, "the waivers file cannot be read or is malformed (missing field, `expires` not a date)"),
    ("W001", E, "a waiver has expired: fix the finding, or renew the waiver with a reason"),
    ("W002", W, "a waiver matches no finding: remove it"),
    # C: meshc.yaml and the inputs of the check layers (front.project, check.layers, check.cue, api)
    ("C001", E, "meshc.yaml malformed: unknown key (at its line), a path that is not a string, `diff:` not a "
                "mapping"),
    ("C002", E, "the CRD file cannot be read or parsed, or serves none of the kinds meshc emits"),
    ("C003", E, "the CUE policies cannot be evaluated (engine missing, a policy file refused or broken)"),
    ("C004", W, "no CRD file, the schema layer did not run"),
    ("C005", E, "`istio:` names a release outside the release table (1.22-1.31)"),
    ("C006", E, "a path in meshc.yaml resolves outside the repository (docs/security.md)"),
    ("C007", E, "`out:` is outside the repository, is the repository, or holds or sits inside a source folder"),
    # B: build, the output folder (meshc.api, meshc.runtime.outdir)
    ("B001", E, "the output folder cannot be created or written (the previous bundles are unchanged)"),
    ("B002", E, "another build holds the output folder (after waiting `MESHC_LOCK_TIMEOUT` s, default 120)"),
    ("B003", E, "the cache or state folder cannot be written"),
    ("B004", W, "the bundles are written but the build could not be recorded (the next build rewrites them)"),
    ("B005", INFO, "no input changed, but a bundle file was deleted or edited since the last build: rebuilding"),
    ("B006", E, "out/<env> exists and is not a bundle meshc wrote: meshc replaces only folders it made"),
    # K: the build cache (meshc.api, meshc.runtime.cache)
    ("K001", INFO, "a cache file meshc did not write is ignored (a planted `.meshc-cache/state.pickle`, or a state "
                "file without this user's tag)"),
    # F: foreign YAML (meshc.adopt.live, meshc.adopt.importer, meshc.front.passthrough)
    ("F001", W, "a document that is not a Kubernetes object (no apiVersion, kind or metadata.name): not read"),
    ("F002", E, "an object defined twice in the input (the first definition is kept)"),
    ("F003", W, "an object outside Istio's and the Gateway API's groups: not read"),
    ("F004", INFO, "meshc import: an object kept verbatim (pass-through), with the reason it cannot be declared"),
    ("F005", E, "meshc import: a file the import would write exists (nothing is written; `--force` overwrites)"),
    ("F006", W, "meshc import: a service the estate already declares (the existing declaration is kept)"),
    ("F007", E, "meshc import: the imported estate does not reproduce the input (the differences are listed)"),
    ("F008", E, "meshc import: nothing imported (no Istio object in the input, errors in the input, an estate "
                "that does not load)"),
    ("F009", W, "meshc import: an object of a kind or version the estate's CRDs do not serve (not imported)"),
    ("F010", E, "a pass-through document that is not an object of a carried API group (or a `kind: List`)"),
    ("F011", E, "a pass-through object whose identity another pass-through document or a declaration already has"),
    ("F012", E, "meshc import: an object kept verbatim that its CRD schema refuses, as the API server would"),
)

#: Every code meshc can emit, in family order.
CODES: dict[str, Code] = {code: Code(code, severity, summary) for code, severity, summary in _ROWS}

#: Numbers that once had a meaning and are never given another one.
RETIRED: dict[str, str] = {
    "L005": "no base layer: listed in front/load.py's docstring, never emitted",
    "M004": "duplicate keyed item in one list: listed in front/merge.py's docstring, never emitted",
    "V026": "a DestinationRule with clientSelector exported beyond its namespace: now the check layer's I343",
}
