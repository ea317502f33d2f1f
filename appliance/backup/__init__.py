"""Backup and restore of an appliance: the state database (online), image versions with their hard links,
the tokens, the config file, and the manifest that says a backup is whole (see docs in the README)."""
