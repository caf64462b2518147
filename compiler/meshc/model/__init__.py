"""The typed values every stage hands to the next: declarations, settings, services, artifacts, diagnostics."""
