"""No declaration value, however hostile, changes the structure of what is emitted.

Every string field of a full declaration gets hostile values (newlines, quotes, `{{`, `#`, `---`,
YAML and JSON syntax, control and line-separator characters). Either meshc refuses the value with
a diagnostic, or the emitted objects have exactly the shape they have with a harmless value, and
the bundle's YAML reads back as the same data.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from meshc.pipeline import compile_estate
from meshc.files.tree import MemoryTree

ENV = "name: dev\nnamespace: egress\n"
FIELDS = ["OWNER", "DESCRIPTION", "SNI", "SAN", "LABELV", "CRED", "EXPORT", "NETWORK", "SA", "SUBZONE",
          "HOST", "CLIENTV", "SELV", "PORTNAME", "EPNAME", "ADDRESS", "REGION"]
TEMPLATE = """services:
  - name: api
    owner: OWNER
    description: DESCRIPTION
    hosts: [HOST]
    location: internal
    resolution: static
    endpointsAs: ENDPOINTS_AS
    selector: {app: SELV}
    ports:
      - {number: 80, protocol: HTTP, name: PORTNAME, targetPort: 443}
    endpoints:
      - address: ADDRESS
        name: EPNAME
        labels: {role: LABELV}
        locality: {region: REGION, zone: z, subzone: SUBZONE}
        network: NETWORK
        serviceAccount: sa1
    clientSelector: {app: CLIENTV}
    exportTo: [EXPORT]
    tls: {mode: simple, sni: SNI, subjectAltNames: [SAN], credentialName: CRED}
    subsets:
      - {name: v1, labels: {role: LABELV}}
"""
HOSTILE = st.one_of(
    st.sampled_from([
        "a\nb: c", "x\"y", "{{ 7*7 }}", "# comment", "---", "- item", "key: value", "'", "\\",
        "{a: 1}", "[1, 2]", "&anchor", "*alias", "!!python/object:os.system", "\u2028", "\x85", "\t",
        "yes", "null", "1e3", "0x10", "\ufeff", "\"},{\"kind\":\"Secret", "%YAML 1.1", "@", "`",
    ]),
    st.text(min_size=1, max_size=30),
)


def _yaml_string(value: str) -> str:
    return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _compile(field: str, value: str, endpoints_as: str) -> Any:
    text = TEMPLATE.replace("ENDPOINTS_AS", endpoints_as)
    harmless = {"HOST": "api.example.com", "ADDRESS": "10.0.0.1", "PORTNAME": "http", "EPNAME": "ep"}
    for name in sorted(FIELDS, key=len, reverse=True):
        text = text.replace(name, _yaml_string(value) if name == field else harmless.get(name, "ok"))
    return compile_estate(MemoryTree({"environments/dev/env.yaml": ENV, "environments/base/a.yaml": text}))


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _bodies(result: Any) -> list[Any]:
    return [a.body for a in result.envs["dev"].artifacts]


REFERENCE = {mode: [_shape(b) for b in _bodies(_compile("OWNER", "ok", mode))]
             for mode in ("inline", "workloadEntries")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=HOSTILE, mode=st.sampled_from(["inline", "workloadEntries"]))
def test_hostile_values_never_reshape_output(field: str, value: str, mode: str) -> None:
    result = _compile(field, value, mode)
    if not result.ok:
        assert result.diagnostics and all(d.position is not None for d in result.diagnostics)
        return
    assert [_shape(b) for b in _bodies(result)] == REFERENCE[mode]
    bundle = result.envs["dev"].bundle
    emitted = [d for path, data in bundle.files.items() if path.endswith(".yaml")
               and path != "kustomization.yaml" for d in yaml.safe_load_all(data)]
    assert len(emitted) == len(_bodies(result))
    assert [_shape(d) for d in emitted] == REFERENCE[mode]


def test_reference_shape_has_every_kind() -> None:
    kinds = {b["kind"] for b in _bodies(_compile("OWNER", "ok", "workloadEntries"))}
    assert kinds == {"ServiceEntry", "WorkloadEntry", "DestinationRule"}
