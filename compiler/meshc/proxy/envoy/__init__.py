"""Envoy configuration from the emitted Istio objects, following istiod's cluster and listener builders."""
