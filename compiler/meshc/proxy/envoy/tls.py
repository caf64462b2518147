"""Upstream TLS for an outbound cluster (reference 5.7, adapted to a static bootstrap).

Input: the `Service`, cluster port/subset, the effective DR `tls` (via `Policy`), whether the
cluster speaks HTTP/2 and whether it is ORIGINAL_DST. Output: a `TlsChoice` holding either a
plain ``transport_socket`` or auto-mTLS ``transport_socket_matches``, plus the
``upstream_http_protocol_options`` (auto SNI / auto SAN) and cluster-metadata flags.

Certificates as istiod sends them (docs/envoy.md, "Fidelity"), all served by the Istio agent through
the static ``sds-grpc`` cluster (`SDS_CLUSTER`, a unix socket); the workload's own ``default`` and
``ROOTCA`` secrets with ``initial_fetch_timeout: 0s`` (the proxy waits for them: Istio's preset
`defaultSDSConfig` / `rootSDSConfig`, pkg/model/authentication.go), the file secrets without it
(istio's `constructSdsSecretConfig` sets none: Envoy's 15 s default):
* ISTIO_MUTUAL: the SDS secrets ``default`` / ``ROOTCA``.
* SIMPLE / MUTUAL with file paths: the SDS secrets ``file-cert:<cert>~<key>`` (client certificate)
  and ``file-root:<ca>`` (validation; ``file-root:system``, the OS bundle the agent finds, when no
  ``caCertificates`` is given), so rotated files are picked up; ``caCrl`` stays a file
  (``crl.filename``), as istiod writes it.
* SIMPLE / MUTUAL with ``credentialName`` (a DR with a workloadSelector, for the workloads it
  selects): the secrets ``kubernetes://<name>`` and ``kubernetes://<name>-cacert`` over ADS, which
  the proxy reaches through the agent's xDS socket (``xds-grpc``); istiod serves them
  (`ApplyCustomSDSToClientCommonTLSContext`, pilot/pkg/security/model/authentication.go). Without a
  workloadSelector a sidecar gets no TLS context at all (plaintext; cluster_tls.go
  `buildUpstreamClusterTLSContext`), except for ``configmap://`` CA names, allowed to anyone.
* ALPN for Istio mTLS is ``istio`` (+``h2``): the istio.metadata_exchange filter is not an
  upstream Envoy extension, so the "without metadata exchange" variant applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshc.proxy.envoy.istio import Service
from meshc.proxy.envoy.policy import Policy
from meshc.proxy.envoy.values import TLS_MATCH_KEY, typed

Json = dict[str, Any]
SDS_CLUSTER = "sds-grpc"
SDS_SOCKET = "./var/run/secrets/workload-spiffe-uds/socket"
SYSTEM_ROOT = "file-root:system"  # security.FileRootSystemCACert: the agent serves the OS bundle
FILE_ROOT = "file-root:"  # + CA path (SdsCertificateConfig.GetRootResourceName)
FILE_CERT = "file-cert:"  # + cert path + "~" + key path (SdsCertificateConfig.GetResourceName)
TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"
PROXY_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol"
TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
RAW_BUFFER = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
PROXY_PROTOCOL = "envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport"
TLS_PARAMS = {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}


@dataclass(frozen=True)
class TlsChoice:
    transport_socket: Json | None = None
    transport_socket_matches: list[Json] = field(default_factory=list)
    upstream_http_options: Json = field(default_factory=dict)
    alpn_override: bool = False
    uses_sds: bool = False
    uses_ads: bool = False  # a credentialName secret: fetched over ADS (istiod, through the agent)


WAITED_FOR = ("default", "ROOTCA")  # istio's preset SDS configs, the only ones with InitialFetchTimeout 0s


def sds_config(wait: bool = False) -> Json:
    config: Json = {
        "api_config_source": {
            "api_type": "GRPC",
            "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
            "set_node_on_first_message_only": True,
            "transport_api_version": "V3",
        },
        "resource_api_version": "V3",
    }
    if wait:
        config["initial_fetch_timeout"] = "0s"
    return config


def sds_secret(name: str) -> Json:
    """`ConstructSdsSecretConfig`: a secret by name from the agent's SDS server."""
    return {"name": name, "sds_config": sds_config(wait=name in WAITED_FOR)}


KUBERNETES_SECRET = "kubernetes://"
CONFIGMAP = "configmap://"
CA_SUFFIX = "-cacert"  # SdsCaSuffix


def ads_secret(credential: str) -> Json:
    """`ConstructSdsSecretConfigForCredential`: a credentialName as a resource name (`ToResourceName`:
    ``kubernetes://`` unless the name already says its kind) fetched over ADS, without
    initial_fetch_timeout (a missing secret must not block the proxy: `SDSAdsConfig`)."""
    name = credential if credential.startswith((KUBERNETES_SECRET, CONFIGMAP)) else KUBERNETES_SECRET + credential
    return {"name": name, "sds_config": {"ads": {}, "resource_api_version": "V3"}}


def file_root(ca: str) -> str:
    return FILE_ROOT + ca if ca else SYSTEM_ROOT


def file_cert(cert: str, key: str) -> str:
    return f"{FILE_CERT}{cert}~{key}"


def raw_buffer_socket() -> Json:
    return {"name": RAW_SOCKET, "typed_config": typed(RAW_BUFFER)}


def _tls_socket(context: Json) -> Json:
    return {"name": TLS_SOCKET, "typed_config": typed(TLS_CONTEXT, context)}


def _san_matchers(names: list[str]) -> list[Json]:
    return [{"exact": name} for name in names]


def istio_mutual_socket(sni: str, sans: list[str], h2: bool) -> Json:
    validation: Json = {"match_subject_alt_names": _san_matchers(sans)} if sans else {}
    common: Json = {
        "tls_params": dict(TLS_PARAMS),
        "alpn_protocols": ["istio", "h2"] if h2 else ["istio"],
        "tls_certificate_sds_secret_configs": [sds_secret("default")],
        "combined_validation_context": {
            "default_validation_context": validation,
            "validation_context_sds_secret_config": sds_secret("ROOTCA"),
        },
    }
    return _tls_socket({"common_tls_context": common, "sni": sni})


def _validation_context(tls: Mapping[str, Any], sans: list[str]) -> Json:
    """common_tls_context's validation: none when insecure, else the CA over SDS (file-root:)."""
    if tls.get("insecureSkipVerify"):
        return {"validation_context": {}}
    default: Json = {"match_subject_alt_names": _san_matchers(sans)} if sans else {}
    if tls.get("caCrl"):
        default["crl"] = {"filename": tls["caCrl"]}
    return {"combined_validation_context": {
        "default_validation_context": default,
        "validation_context_sds_secret_config": sds_secret(file_root(str(tls.get("caCertificates") or ""))),
    }}


def _origination(tls: Mapping[str, Any], service: Service, h2: bool) -> TlsChoice:
    """SIMPLE / MUTUAL with files, the files served over SDS. Auto SNI / SAN validation are
    decided on the DR's own SANs, before the ServiceEntry's are filled in (cluster_tls.go)."""
    own_sans = list(tls.get("subjectAltNames") or [])
    sans = own_sans or list(service.service_accounts)
    common: Json = {"tls_params": dict(TLS_PARAMS)}
    if h2:
        common["alpn_protocols"] = ["h2"]
    credential = str(tls.get("credentialName") or "")
    if credential:
        common.update(_credential_context(tls, credential, sans))
    else:
        if tls.get("mode") == "MUTUAL":
            name = file_cert(str(tls.get("clientCertificate") or ""), str(tls.get("privateKey") or ""))
            common["tls_certificate_sds_secret_configs"] = [sds_secret(name)]
        common.update(_validation_context(tls, sans))
    context: Json = {"common_tls_context": common}
    options: Json = {}
    if tls.get("sni"):
        context["sni"] = tls["sni"]
    else:
        options["auto_sni"] = True
        if not own_sans and not tls.get("insecureSkipVerify"):
            options["auto_san_validation"] = True
    secrets = tls.get("mode") == "MUTUAL" or not tls.get("insecureSkipVerify")
    return TlsChoice(_tls_socket(context), upstream_http_options=options, alpn_override=True,
                     uses_sds=secrets and not credential, uses_ads=secrets and bool(credential))


def _credential_context(tls: Mapping[str, Any], credential: str, sans: list[str]) -> Json:
    """`ApplyCustomSDSToClientCommonTLSContext`: the client certificate (MUTUAL) and, unless
    insecureSkipVerify, the CA ``<name>-cacert`` with the SANs, all over ADS; no CRL."""
    out: Json = {}
    if tls.get("mode") == "MUTUAL":
        out["tls_certificate_sds_secret_configs"] = [ads_secret(credential)]
    if not tls.get("insecureSkipVerify"):
        out["combined_validation_context"] = {
            "default_validation_context": {"match_subject_alt_names": _san_matchers(sans)} if sans else {},
            "validation_context_sds_secret_config": ads_secret(credential + CA_SUFFIX),
        }
    return out


def istio_sni(port: int, subset: str, host: str) -> str:
    return f"outbound_.{port}_.{subset}_.{host}"


def _explicit(tls: Mapping[str, Any], service: Service, port: int, subset: str,
              h2: bool, selected: bool) -> TlsChoice:
    mode = str(tls.get("mode") or "DISABLE")
    if mode == "ISTIO_MUTUAL":
        sni = str(tls.get("sni") or istio_sni(port, subset, service.host))
        sans = list(tls.get("subjectAltNames") or service.service_accounts)
        return TlsChoice(istio_mutual_socket(sni, sans, h2), uses_sds=True)
    credential = str(tls.get("credentialName") or "")
    if mode in ("SIMPLE", "MUTUAL") and (selected or not credential or credential.startswith(CONFIGMAP)):
        return _origination(tls, service, h2)
    return TlsChoice()  # DISABLE, or credentialName in a DR without workloadSelector: no TLS on sidecars


def _auto_mtls(service: Service, port: int, subset: str, h2: bool, original_dst: bool) -> TlsChoice:
    socket = istio_mutual_socket(istio_sni(port, subset, service.host),
                                 list(service.service_accounts), h2)
    if original_dst:
        endpoints = service.endpoints
        if endpoints and all(e.tls_mode == "istio" for e in endpoints):
            return TlsChoice(socket, uses_sds=True)
        return TlsChoice()
    matches = [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": socket},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": raw_buffer_socket()},
    ]
    return TlsChoice(transport_socket_matches=matches, uses_sds=True)


def upstream_tls(service: Service, port: int, subset: str, policy: Policy,
                 h2: bool, original_dst: bool, selected: bool = False) -> TlsChoice:
    """DR tls if present; else auto-mTLS for MESH_INTERNAL; then PROXY protocol wrapping.
    `selected`: the DR has a workloadSelector (credentialName is honoured only then)."""
    if isinstance(policy.tls, Mapping):
        choice = _explicit(policy.tls, service, port, subset, h2, selected)
    elif service.mesh_external:
        choice = TlsChoice()
    else:
        choice = _auto_mtls(service, port, subset, h2, original_dst)
    if isinstance(policy.proxy_protocol, Mapping):
        return _with_proxy_protocol(choice, str(policy.proxy_protocol.get("version") or "V1"))
    return choice


def _proxy_wrap(inner: Json, version: str) -> Json:
    body = {"config": {"version": version}, "transport_socket": inner}
    return {"name": PROXY_SOCKET, "typed_config": typed(PROXY_PROTOCOL, body)}


def _with_proxy_protocol(choice: TlsChoice, version: str) -> TlsChoice:
    if choice.transport_socket_matches:
        matches = [
            {**m, "transport_socket": _proxy_wrap(m["transport_socket"], version)}
            for m in choice.transport_socket_matches
        ]
        return TlsChoice(None, matches, choice.upstream_http_options, choice.alpn_override,
                         choice.uses_sds, choice.uses_ads)
    socket = _proxy_wrap(choice.transport_socket or raw_buffer_socket(), version)
    return TlsChoice(socket, [], choice.upstream_http_options, choice.alpn_override,
                     choice.uses_sds, choice.uses_ads)


def endpoint_tls_metadata(tls_mode: str) -> Json:
    """LbEndpoint metadata that drives the auto-mTLS socket match."""
    return {"filter_metadata": {TLS_MATCH_KEY: {"tlsMode": "istio"}}} if tls_mode == "istio" else {}


DOWNSTREAM_TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
# `ALPNHttp` / `ALPNDownstream` (pilot/pkg/networking/util/util.go:165-177): what a gateway offers
# to the mesh's clients on an ISTIO_MUTUAL server; istiod puts `istio-peer-exchange` first on a TLS
# (TCP) server (`ALPNDownstreamWithMxc`) unless PILOT_DISABLE_MX_ALPN: without the
# istio.metadata_exchange filter (not in upstream Envoy) it is left out, as with that flag.
GATEWAY_ALPN = ["h2", "http/1.1"]


def downstream_istio_mutual_socket(alpn: list[str]) -> Json:
    """The transport socket of an ISTIO_MUTUAL gateway server, as `BuildListenerTLSContext` builds
    it (pilot/pkg/networking/core/listener.go:141-214, `ApplyToCommonTLSContext` in
    pilot/pkg/security/model/authentication.go:160-224): the workload certificate `default`, the
    client validated against `ROOTCA` (no SANs: any mesh identity), client certificate required."""
    common: Json = {
        "alpn_protocols": list(alpn),
        "tls_certificate_sds_secret_configs": [sds_secret("default")],
        "combined_validation_context": {
            "default_validation_context": {},
            "validation_context_sds_secret_config": sds_secret("ROOTCA"),
        },
    }
    context = {"common_tls_context": common, "require_client_certificate": True}
    return {"name": TLS_SOCKET, "typed_config": typed(DOWNSTREAM_TLS_CONTEXT, context)}
