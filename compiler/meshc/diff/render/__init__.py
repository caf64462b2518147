"""Renderers of a change set; they never change it."""
