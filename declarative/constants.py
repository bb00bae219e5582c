"""Named values of the configuration file format."""

FORMAT_VERSION = "1"
FORMAT_VERSION_KEY = "_format_version"
# The audit trail's `source` for every change an apply makes (SPEC section 18).
AUDIT_SOURCE = "config-file"
# `${NAME}`: a secret is named, never written; the value comes from the environment at apply.
SECRET_REFERENCE_PATTERN = r"^\$\{([A-Z_][A-Z0-9_]*)\}$"
# Long strings stay on one line, so a diff of the file shows one changed line per value.
YAML_LINE_WIDTH = 1_000_000
YAML_CONTENT_TYPE = "application/yaml"
