"""Check layer `envoy`: the emitted Envoy configuration against Envoy's API."""
