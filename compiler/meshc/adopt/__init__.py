"""The adoption path: existing Istio YAML in, and the compiled estate held against it.

* `live.py`: reading Istio YAML as `kubectl get -o yaml` prints it (files, folders, stdin, `kind: List`),
  with positions, server-set fields dropped, identities checked (F0xx codes).
* `importer.py`: `meshc import` (objects -> layered declarations + pass-through, with the round-trip proof).
* `explain.py`: `meshc explain` (a field of an emitted object, an Envoy cluster or an iptables rule ->
  the chain of declarations, settings and templates that made it).
* `drift.py`: `meshc drift` (the compiled bundle against the live objects, in `meshc diff`'s change model).

Sits above `diff` (it reuses the change model and renderers) and `api` (one compile per command).
"""
