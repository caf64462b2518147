"""VM traffic capture rules, following istio-iptables."""
