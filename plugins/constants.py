"""Named values of the plugin system."""

ENTRY_POINT_GROUP = "gateway.plugins"
HOOKS = ("access", "response", "log")
# The plugins every gateway ships, loaded like any other (docs/plugins.md).
BUILTIN_PLUGINS = (
    "plugins.builtins.termination.RequestTermination",
    "plugins.builtins.mock.Mock",
    "plugins.builtins.validator.RequestValidator",
)
MAX_TIMEOUT_MS = 60_000
PRIORITY_BOUND = 1_000_000
MAX_PLUGIN_NAME_LENGTH = 63
# Finished requests waiting for their log hooks; past this they are dropped (and counted).
LOG_QUEUE_LIMIT = 10_000
