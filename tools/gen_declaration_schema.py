"""Writes compiler/meshc/schemas/*.schema.json, the declaration schemas (run: python tools/gen_declaration_schema.py)."""
import json
LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DUR = "^([0-9]+(\\.[0-9]+)?(h|m|s|ms|us|ns))+$"
def obj(props, required=(), desc=None, **kw):
    d = {"type": "object", "properties": props, "additionalProperties": False}
    if required: d["required"] = list(required)
    if desc: d["description"] = desc
    d.update(kw); return d
S = {"type": "string"}
def s(desc, **kw): return {"type": "string", "description": desc, **kw}
def i(desc, lo=None, hi=None):
    d = {"type": "integer", "description": desc}
    if lo is not None: d["minimum"] = lo
    if hi is not None: d["maximum"] = hi
    return d
def dur(desc): return {"type": "string", "pattern": DUR, "description": desc + " (a duration such as 250ms, 5s, 1m)"}
strmap = {"type": "object", "additionalProperties": {"type": "string"}}
patch = {"enum": ["delete"], "description": "In an environment's overrides: remove this item (or the whole service) in this environment."}
U32 = 4294967295
lb = obj({
  "simple": {"enum": ["UNSPECIFIED","LEAST_CONN","RANDOM","PASSTHROUGH","ROUND_ROBIN","LEAST_REQUEST"], "description": "Load-balancing algorithm; unset means LEAST_REQUEST."},
  "consistentHash": obj({
     "httpHeaderName": S, "httpQueryParameterName": S, "useSourceIp": {"type": "boolean"},
     "httpCookie": obj({"name": S, "path": S, "ttl": dur("Cookie lifetime")}, ["name"]),
     "ringHash": obj({"minimumRingSize": i("Minimum ring size", 0, U32)}),
     "maglev": obj({"tableSize": i("Maglev table size (a prime < 5000011)", 1, 5000010)}),
  }),
  "localityLbSetting": obj({
     "enabled": {"type": "boolean"},
     "distribute": {"type": "array", "items": obj({"from": S, "to": {"type": "object", "additionalProperties": {"type": "integer"}}})},
     "failover": {"type": "array", "items": obj({"from": S, "to": S})},
     "failoverPriority": {"type": "array", "items": S},
  }),
  "warmup": obj({"duration": dur("Warm-up window"), "minimumPercent": {"type": "number", "minimum": 0, "maximum": 100}, "aggression": {"type": "number", "exclusiveMinimum": 0}}, ["duration"]),
}, desc="Istio LoadBalancerSettings.")
pool = obj({
  "tcp": obj({"maxConnections": i("", 0, 2147483647), "connectTimeout": dur("Connect timeout"),
              "tcpKeepalive": obj({"probes": i("", 0, U32), "time": dur("Idle time before probes"), "interval": dur("Probe interval")}),
              "maxConnectionDuration": dur("Maximum connection lifetime"), "idleTimeout": dur("TCP idle timeout")}),
  "http": obj({"http1MaxPendingRequests": i("", 0, 2147483647), "http2MaxRequests": i("", 0, 2147483647),
               "maxRequestsPerConnection": i("", 0, 2147483647), "maxRetries": i("", 0, 2147483647),
               "idleTimeout": dur("HTTP idle timeout"), "h2UpgradePolicy": {"enum": ["DEFAULT","DO_NOT_UPGRADE","UPGRADE"]},
               "useClientProtocol": {"type": "boolean"}, "maxConcurrentStreams": i("", 0, 2147483647)}),
}, desc="Istio ConnectionPoolSettings.")
outlier = obj({
  "consecutive5xxErrors": i("", 0, U32), "consecutiveGatewayErrors": i("", 0, U32),
  "splitExternalLocalOriginErrors": {"type": "boolean"}, "consecutiveLocalOriginFailures": i("", 0, U32),
  "interval": dur("Ejection sweep interval"), "baseEjectionTime": dur("Minimum ejection time"),
  "maxEjectionPercent": i("", 0, 100), "minHealthPercent": i("", 0, 100),
}, desc="Istio OutlierDetection.")
tls = obj({
  "mode": {"enum": ["disable","simple","mutual","istio-mutual"], "description": "TLS origination mode."},
  "sni": s("SNI to send to the server."),
  "subjectAltNames": {"type": "array", "items": S, "description": "SANs accepted on the server certificate."},
  "credentialName": s("Kubernetes secret with client cert/CA; needs clientSelector on sidecars."),
  "caCertificates": s("CA bundle file path in the proxy."),
  "clientCertificate": s("Client certificate file path (mutual)."),
  "privateKey": s("Client key file path (mutual)."),
  "insecureSkipVerify": {"type": "boolean", "description": "Skip server certificate verification."},
}, desc="TLS origination by the client sidecar (DestinationRule trafficPolicy.tls).")
port_level = obj({"port": i("Service port number this policy applies to", 1, 65535),
                  "loadBalancer": lb, "connectionPool": pool, "outlierDetection": outlier, "tls": tls, "$patch": patch}, ["port"])
retry_budget = obj({"percent": {"type": "number", "minimum": 0, "maximum": 100,
                                 "description": "Share of active requests that may be retries (Istio default 20 from 1.30)."},
                     "minRetryConcurrency": i("Retries always allowed, whatever the percent", 0, U32),
                     "budgetInterval": dur("Window the budget is computed over (Istio 1.31+)")},
                    desc="Istio RetryBudget (Istio 1.27+).")
traffic = obj({"loadBalancer": lb, "connectionPool": pool, "outlierDetection": outlier,
               "retryBudget": retry_budget,
               "proxyProtocol": obj({"version": {"enum": ["V1", "V2"]}}, desc="PROXY protocol to the upstream (Istio 1.22+)."),
               "portLevel": {"type": "array", "items": port_level, "description": "Per-port policies; an entry replaces the service-level policy for that port."}},
              desc="Traffic policy of the DestinationRule.")
port = obj({"number": i("Port number the service is reached on", 1, 65535),
            "protocol": {"type": "string", "pattern": "^(?i:http|https|grpc|grpc-web|http2|http_proxy|tcp|tls|mongo|redis|mysql|udp)$",
                         "description": "HTTP, HTTPS, GRPC, GRPC-Web, HTTP2, HTTP_PROXY, TCP, TLS, MONGO, REDIS, MYSQL or UDP (case-insensitive)."},
            "name": {"type": "string", "pattern": LABEL, "maxLength": 62, "description": "Port name; derived as <protocol>-<number> when absent."},
            "targetPort": i("Port on the endpoints; defaults to number", 1, 65535), "$patch": patch}, ["number", "protocol"])
locality = obj({"region": S, "zone": S, "subzone": S})
endpoint = obj({"address": s("IP address, hostname (dns resolution only) or unix:///path socket."),
                "name": {"type": "string", "pattern": LABEL, "maxLength": 40, "description": "Suffix of the WorkloadEntry name; derived from the address when absent."},
                "ports": {"type": "object", "propertyNames": {"pattern": LABEL, "maxLength": 62}, "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 65535}, "description": "Port name -> port on this endpoint."},
                "labels": strmap, "locality": locality, "weight": i("Load-balancing weight (0 means 1)", 0, U32),
                "network": s("Network name from env.yaml networks."),
                "serviceAccount": {"type": "string", "pattern": LABEL, "maxLength": 253, "description": "Set when the endpoint runs an Istio sidecar (a VM workload)."},
                "$patch": patch}, ["address"])
subset_traffic = obj({**traffic["properties"], "tls": tls}, desc="Traffic policy for this subset only.")
subset = obj({"name": {"type": "string", "pattern": LABEL, "maxLength": 63}, "labels": strmap, "trafficPolicy": subset_traffic, "$patch": patch}, ["name"])
consumer = obj({"namespace": {"type": "string", "pattern": LABEL, "maxLength": 63, "description": "Consumer namespace."},
                 "serviceAccount": {"type": "string", "pattern": LABEL, "maxLength": 253,
                                    "description": "Only this service account of the namespace (default: all of it)."}},
                ["namespace"])
service_props = {
  "name": {"type": "string", "pattern": LABEL, "maxLength": 53, "description": "Service name: a DNS-1123 label, unique per environment."},
  "namespace": {"type": "string", "pattern": LABEL, "maxLength": 63, "description": "Namespace of the objects; defaults to env.yaml namespace."},
  "owner": s("Team that owns the service.", minLength=1),
  "description": S,
  "hosts": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string", "minLength": 1, "maxLength": 255}, "description": "Fully qualified host names (at least one dot)."},
  "addresses": {"type": "array", "maxItems": 256, "items": {"type": "string", "maxLength": 64}, "description": "Virtual IPs or CIDRs."},
  "location": {"enum": ["external", "internal"], "description": "external: outside the mesh; internal: VMs running sidecars."},
  "resolution": {"enum": ["none", "static", "dns", "dns-round-robin"]},
  "ports": {"type": "array", "minItems": 1, "maxItems": 256, "items": port},
  "endpoints": {"type": "array", "maxItems": 4096, "items": endpoint},
  "endpointsAs": {"enum": ["inline", "workloadEntries"], "description": "inline ServiceEntry endpoints (default) or WorkloadEntry objects selected by labels."},
  "selector": {**strmap, "description": "Labels selecting the WorkloadEntries (endpointsAs: workloadEntries); default {app: <name>}."},
  "tls": tls,
  "clientSelector": {**strmap, "description": "Labels of the client workloads the DestinationRule applies to (DestinationRule workloadSelector)."},
  "trafficPolicy": traffic,
  "subsets": {"type": "array", "items": subset},
  "exportTo": {"type": "array", "items": S, "description": "Namespaces the objects are visible to: '.', '*' or names."},
  "egress": {"enum": ["direct", "gateway", "waypoint"],
             "description": "How the mesh reaches the service: direct from each sidecar, through the egress gateway, or "
                            "through the egress waypoint (default: env.yaml egress.mode, else direct)."},
  "consumers": {"type": "array", "items": consumer,
                "description": "Who may call the service: namespaces, or service accounts in a namespace (docs/egress.md)."},
}
service = obj(dict(service_props), ["name", "hosts", "ports"], desc="One service the mesh must reach.")
import copy
def _partial(d):
    if isinstance(d, dict):
        return {k: _partial(v) for k, v in d.items() if k != "required"}
    if isinstance(d, list):
        return [_partial(v) for v in d]
    return d
override = _partial(obj({**service_props, "$patch": patch}, desc="Changes to a base service in this environment; only the keys given change."))
override["required"] = ["name"]
_props = override["properties"]
_props["ports"]["items"]["required"] = ["number"]
_props["endpoints"]["items"]["required"] = ["address"]
_props["subsets"]["items"]["required"] = ["name"]
_props["trafficPolicy"]["properties"]["portLevel"]["items"]["required"] = ["port"]
_props["ports"].pop("minItems", None)
decl = {
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://meshc.dev/schemas/declarations.schema.json",
  "title": "meshc service declaration file",
  "type": "object", "additionalProperties": False,
  "properties": {"services": {"type": "array", "items": service}, "overrides": {"type": "array", "items": override}},
}
env = {
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://meshc.dev/schemas/env.schema.json",
  "title": "meshc environment settings (environments/<env>/env.yaml)",
  **obj({
    "name": {"type": "string", "pattern": LABEL, "description": "Environment name; must match the directory name."},
    "namespace": {"type": "string", "pattern": LABEL, "description": "Default namespace for services."},
    "trustDomain": s("SPIFFE trust domain of the mesh."),
    "clusterDomain": s("Kubernetes cluster domain."),
    "networks": {"type": "array", "items": S, "description": "Network names endpoints may reference."},
    "policyProfile": {"enum": ["relaxed", "standard", "strict"], "description": "Which policy set applies."},
    "production": {"type": "boolean", "description": "Marks a production environment (review diffs flag changes to it)."},
    "proxy": obj({"locality": s("Locality of the client proxies (region/zone/subzone), for Envoy priorities."),
                  "dnsRefreshRate": dur("DNS refresh rate"), "connectTimeout": dur("Default connect timeout"),
                  "outboundTrafficPolicy": {"enum": ["ALLOW_ANY", "REGISTRY_ONLY"]},
                  "labels": {"type": "object", "additionalProperties": S,
                             "description": "Labels of the client proxies (e.g. topology.istio.io/network), "
                                            "matched by DestinationRule failoverPriority (docs/envoy.md)."},
                  "configDir": {"type": "string", "pattern": "^/[^\\u0000-\\u001f\\u007f]*$",
                                "description": "Absolute folder on each proxy host holding this bundle's envoy/ files "
                                               "(clusters.json, listeners.json): the bootstraps read the shared clusters "
                                               "and listeners from there (default /etc/meshc/envoy)."}}),
    "vm": obj({"dnsCapture": {"type": "boolean"}, "egressAllowList": {"type": "boolean"},
               "excludeInboundPorts": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
               "includeOutboundCIDRs": {"type": "array", "items": S}, "excludeOutboundCIDRs": {"type": "array", "items": S},
               "excludeOutboundPorts": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
               "dnsServers": {"type": "array", "items": S,
                              "description": "IPv4 nameservers of the VMs' /etc/resolv.conf: DNS capture redirects "
                                             "only DNS to these to the agent (none: DNS is not captured)."},
               "dnsServersByNetwork": {"type": "object", "additionalProperties": {"type": "array", "items": S},
                                       "description": "Per network (a name from networks:): the resolv.conf nameservers of "
                                                      "the VMs on that network, used instead of dnsServers for their DNS capture."}}),
    "namespaces": {"type": "object", "propertyNames": {"pattern": LABEL, "maxLength": 63},
                   "additionalProperties": obj({"serviceAccounts": {"type": "array", "items": {"type": "string", "pattern": LABEL, "maxLength": 253}}}),
                   "description": "The namespaces of the cluster that may call services, with their service accounts "
                                  "(none listed: any): consumers must name them (docs/egress.md)."},
    "dataplane": {"enum": ["sidecar", "ambient"],
                  "description": "The environment's data-plane mode: sidecar (default) or ambient (ztunnel and waypoints)."},
    "egress": obj({
      "mode": {"enum": ["direct", "gateway", "waypoint"],
               "description": "Default egress path of the services (a service's egress: wins): direct, the egress "
                              "gateway (sidecar mode) or an egress waypoint (ambient)."},
      "gateway": obj({
        "name": {"type": "string", "pattern": LABEL, "maxLength": 63,
                 "description": "Name of the egress gateway's Kubernetes Service (e.g. istio-egressgateway)."},
        "namespace": {"type": "string", "pattern": LABEL, "maxLength": 63,
                      "description": "Namespace of the egress gateway (e.g. istio-system); its Gateway, VirtualService, "
                                     "DestinationRules and AuthorizationPolicies go there."},
        "selector": {**strmap, "minProperties": 1,
                     "description": "Labels of the gateway's pods (Gateway selector, AuthorizationPolicy selector)."},
        "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}, "minItems": 1,
                  "description": "The ports the gateway's Kubernetes Service exposes (Istio's default egress gateway: "
                                 "80 and 443); a gateway service must use only these (absent: not checked)."},
      }, ["name", "namespace", "selector"], desc="The egress gateway (sidecar mode) services with egress: gateway go through."),
      "waypoint": obj({
        "name": {"type": "string", "pattern": LABEL, "maxLength": 63, "description": "Name of the waypoint Gateway."},
        "namespace": {"type": "string", "pattern": LABEL, "maxLength": 63,
                      "description": "Namespace of the waypoint (e.g. istio-egress)."},
        "managed": {"type": "boolean", "description": "meshc emits the waypoint Gateway (class istio-waypoint) itself."},
        "tlsOrigination": {"enum": ["DestinationRule", "BackendTLSPolicy"],
                           "description": "How the waypoint originates TLS: a DestinationRule (default) or a "
                                          "BackendTLSPolicy (Istio 1.28+)."},
      }, ["name", "namespace"], desc="The egress waypoint (ambient) services with egress: waypoint are bound to."),
      "sidecarHosts": {"type": "array", "items": S,
                       "description": "Extra Sidecar egress hosts ('ns/host') every consumer namespace keeps, beside './*' "
                                      "and the control plane's namespace."},
      "controlPlaneNamespace": {"type": "string", "pattern": LABEL, "maxLength": 63,
                                "description": "Namespace of istiod (default istio-system); consumer Sidecars keep it visible."},
    }, desc="How the environment's services are reached: egress path and who may call them (docs/egress.md)."),
  }, ["name", "namespace"]),
}
decl["$defs"] = {"service": service, "override": override}
decl["properties"] = {"services": {"type": "array", "items": {"$ref": "#/$defs/service"}},
                      "overrides": {"type": "array", "items": {"$ref": "#/$defs/override"}}}
with open("compiler/meshc/schemas/declarations.schema.json", "w") as fh:
    json.dump(decl, fh, indent=2); fh.write("\n")
with open("compiler/meshc/schemas/env.schema.json", "w") as fh:
    json.dump(env, fh, indent=2); fh.write("\n")
