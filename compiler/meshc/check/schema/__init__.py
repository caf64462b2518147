"""Check layer `schema`: the Istio CRDs' openAPIV3Schema with CEL rules."""
