"""Stage expand: a validated service -> Istio objects, through the sandboxed templates."""
