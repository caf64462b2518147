"""Check layer `cue`: organisation policies evaluated by the CUE engine."""
