"""Stage proxy: Istio objects -> what the proxies need (Envoy configuration, VM iptables rules)."""
