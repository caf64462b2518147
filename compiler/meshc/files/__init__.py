"""Reading the repository: confined file access, source trees, YAML positions and YAML output."""
