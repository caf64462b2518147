"""The command line: parses flags, calls meshc.api, prints."""
