"""Plugins (SPEC section 19): the interface plugin authors use, discovery, and PluginConfig."""
