"""The file as text: parse YAML or JSON, write deterministic YAML or JSON, name paths in it.

Every error about a file is a `ConfigFileError` listing each bad value by its path in the
file (`services[2].targets[0].url`) and the rule it breaks, so the command and the API
report the same thing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from declarative.constants import SECRET_REFERENCE_PATTERN, YAML_LINE_WIDTH

__all__ = [
    "ConfigFileError",
    "FileProblem",
    "dump_json",
    "dump_yaml",
    "format_path",
    "parse_document",
    "resolve_secret",
    "secret_reference",
]

_SECRET_REFERENCE = re.compile(SECRET_REFERENCE_PATTERN)
_NOT_IN_ENV_NAME = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One bad value: where it is in the file, which rule it breaks, and what to do."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(file)'}: {self.message} [{self.rule}]"


class ConfigFileError(Exception):
    """The file cannot be applied; nothing was changed."""

    def __init__(self, problems: Iterable[FileProblem]):
        self.problems = sorted(problems, key=lambda p: p.path)
        super().__init__("; ".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: str, rule: str, message: str) -> ConfigFileError:
        return cls([FileProblem(path, rule, message)])

    def as_errors(self) -> dict[str, list[str]]:
        """Messages keyed by file path: the `errors` of the 400 problem document."""
        errors: dict[str, list[str]] = {}
        for problem in self.problems:
            errors.setdefault(problem.path or "_file", []).append(f"{problem.message} [{problem.rule}]")
        return errors


def format_path(parts: Iterable[str | int]) -> str:
    """`("services", 2, "targets", 0, "url")` -> `services[2].targets[0].url`."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases: `*name` lets a few lines expand to gigabytes (billion laughs)."""

    def fetch_alias(self):
        raise yaml.YAMLError("aliases (*name) are not accepted in a configuration file")


def parse_document(text: str | bytes) -> dict:
    """YAML or JSON (JSON is YAML) into plain data; timestamps stay the strings they were."""
    try:
        data = _plain(yaml.load(text, Loader=_NoAliasLoader))  # a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigFileError.single("", "syntax", f"Not valid YAML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError.single("", "type", "The file must hold a mapping with _format_version.")
    return data


def _plain(value):
    """YAML reads unquoted timestamps as datetimes; the schema and the models want strings."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def dump_yaml(document: dict) -> str:
    return yaml.safe_dump(
        document, sort_keys=True, default_flow_style=False, allow_unicode=True, width=YAML_LINE_WIDTH
    )


def dump_json(document: dict) -> str:
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def secret_reference(*parts: str) -> str:
    """The `${NAME}` an export writes for a secret, derived from where it lives."""
    name = _NOT_IN_ENV_NAME.sub("_", "_".join(parts).upper()).strip("_")
    return f"${{{name}}}"


def resolve_secret(value: str, path: str) -> str:
    """A `${NAME}` reference's value from the environment; an empty value stays empty."""
    if not value:
        return ""
    match = _SECRET_REFERENCE.match(value)
    if match is None:
        raise ConfigFileError.single(path, "secret_in_clear", "Write secrets as ${ENV_NAME} references.")
    resolved = os.environ.get(match.group(1))
    if resolved is None:
        raise ConfigFileError.single(
            path, "environment_unset", f"The environment variable {match.group(1)} is not set."
        )
    return resolved
