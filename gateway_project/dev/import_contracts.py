"""An import-linter contract type for what its `forbidden` type cannot say (SPEC section 17).

`forbidden` refuses a whole external package only; the data plane may use `django.conf`
and `django.db` but not Django's views, URLconfs or templates, so this contract matches the
imported module by dotted prefix, read from each import's own line.
"""

from __future__ import annotations

import re

from importlinter import Contract, ContractCheck, fields, output

__all__ = ["ForbiddenSubmodulesContract"]

_IMPORTED = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s+([\w, ()]+)|import\s+([\w.]+))")


def _imported_names(line: str) -> list[str]:
    """Dotted names an import line brings in: `from a.b import c` gives a.b and a.b.c."""
    match = _IMPORTED.match(line)
    if match is None:
        return []
    if match.group(3):
        return [match.group(3)]
    names = [n.strip() for n in match.group(2).strip("() ").split(",") if n.strip()]
    return [match.group(1)] + [f"{match.group(1)}.{name.split()[0]}" for name in names]


class ForbiddenSubmodulesContract(Contract):
    """`source_modules` (and their descendants) must not import any of `forbidden_prefixes`."""

    type_name = "forbidden_submodules"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    forbidden_prefixes = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        prefixes = tuple(self.forbidden_prefixes)
        violations = []
        for source in self.source_modules:
            for importer in sorted({source.name} | graph.find_descendants(source.name)):
                for imported in graph.find_modules_directly_imported_by(importer):
                    for detail in graph.get_import_details(importer=importer, imported=imported):
                        bad = [n for n in _imported_names(detail["line_contents"]) if _matches(n, prefixes)]
                        if bad:
                            violations.append((importer, detail["line_number"], detail["line_contents"]))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, line_number, line in check.metadata["violations"]:
            output.print_error(f"{importer}:{line_number}: {line.strip()}", bold=False)
        output.new_line()


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
