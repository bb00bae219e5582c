"""`manage.py gateway_config export|diff|apply`: the registry as a reviewable file (SPEC section 18).

Exit codes: 0 done (diff: no change), 2 diff found changes, 1 the file is invalid or
unreadable (nothing was changed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from declarative.document import ConfigFileError, dump_json, dump_yaml, parse_document
from declarative.export import export_document
from declarative.sync import CREATED, DELETED, ChangeReport, apply_document

EXIT_CHANGES = 2
STDIO = "-"
_MARKS = {CREATED: "+", "updated": "~", DELETED: "-"}


class Command(BaseCommand):
    help = "Export the registry to a file, show how a file differs from it, or apply a file."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser("export", help="Write the registry as YAML (JSON for a .json file).")
        export.add_argument("-o", "--output", default=STDIO, help="File to write; default stdout.")
        export.add_argument(
            "--include-key-hashes", action="store_true", help="Add API-key hashes (for DB-less data planes)."
        )
        diff = actions.add_parser("diff", help="Show what applying FILE would change (exit 2 if anything).")
        apply = actions.add_parser("apply", help="Make the registry what FILE says, in one transaction.")
        for sub in (diff, apply):
            sub.add_argument("file", help="YAML or JSON file; - for stdin.")
            sub.add_argument("--prune", action="store_true", help="Delete what the file no longer has.")
            sub.add_argument(
                "--prune-tenants",
                action="store_true",
                help="Also delete tenants, subscriptions and API keys.",
            )
        apply.add_argument("--dry-run", action="store_true", help="Report the changes, then roll back.")

    def handle(self, *args, **options) -> None:
        if options["action"] == "export":
            self.export(options["output"], options["include_key_hashes"])
            return
        dry_run = options["action"] == "diff" or options.get("dry_run", False)
        try:
            report = apply_document(
                parse_document(self.read(options["file"])),
                prune=options["prune"],
                prune_tenants=options["prune_tenants"],
                dry_run=dry_run,
            )
        except ConfigFileError as exc:
            lines = "\n".join(f"  {problem}" for problem in exc.problems)
            raise CommandError(f"The file was not applied; nothing changed:\n{lines}", returncode=1) from exc
        self.show(report, dry_run)
        if options["action"] == "diff" and report.changes:
            sys.exit(EXIT_CHANGES)

    def export(self, output: str, include_key_hashes: bool) -> None:
        document = export_document(include_key_hashes=include_key_hashes)
        text = dump_json(document) if output.endswith(".json") else dump_yaml(document)
        if output == STDIO:
            self.stdout.write(text, ending="")
        else:
            Path(output).write_text(text, encoding="utf-8")

    @staticmethod
    def read(name: str) -> str:
        try:
            return sys.stdin.read() if name == STDIO else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {name}: {exc.strerror}.", returncode=1) from exc

    def show(self, report: ChangeReport, dry_run: bool) -> None:
        """One line per object (+ created, ~ updated, - deleted), each changed field below it."""
        for change in report.changes:
            self.stdout.write(f"{_MARKS[change.action]} {change.label}")
            for name, (before, after) in sorted(change.fields.items()):
                self.stdout.write(f"    {name}: {before!r} -> {after!r}")
        counts = {action: len(labels) for action, labels in report.as_dict().items()}
        summary = ", ".join(f"{count} {action}" for action, count in counts.items())
        if not report.changes:
            self.stdout.write("No changes.")
        elif dry_run:
            self.stdout.write(f"Would change: {summary} (nothing was changed).")
        else:
            self.stdout.write(self.style.SUCCESS(f"Applied: {summary}."))
