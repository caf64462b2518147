"""JSON Schemas of meshc's declaration files (package data)."""
