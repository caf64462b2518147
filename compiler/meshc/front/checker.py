"""The collector of one service declaration's diagnostics, each placed at the line that wrote it."""

from __future__ import annotations

from meshc.front.provenance import place_decl
from meshc.model.core import EnvSettings, ServiceDecl
from meshc.model.diagnostics import DataPath, Diagnostic, Severity, format_path


class Checker:
    """Collects diagnostics for one service declaration, placed via provenance."""

    def __init__(self, env: EnvSettings, decl: ServiceDecl) -> None:
        self.env, self.decl, self.data = env, decl, decl.data
        self.diags: list[Diagnostic] = []

    def add(self, code: str, path: DataPath, message: str, hint: str,
            severity: Severity = Severity.ERROR, involves: tuple[DataPath, ...] = ()) -> None:
        """A finding at `path`; `involves` names other values it depends on: the finding is placed
        at whichever of them the most specific layer (an overlay) wrote, the others related."""
        position, related = place_decl(self.decl, path, involves)
        self.diags.append(Diagnostic(
            code, severity, message, position, format_path(path), hint,
            self.env.name, f"service {self.decl.name}", related=related))

    @property
    def errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diags)
