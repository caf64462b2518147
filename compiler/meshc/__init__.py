"""meshc: a declarative compiler from service declarations to Istio, Envoy and iptables bundles."""

__version__ = "0.1.0"
