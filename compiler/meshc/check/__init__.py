"""Stage check: the emitted objects -> findings, in layers (schema, istio, cue, envoy), then waivers."""
