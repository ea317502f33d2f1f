"""The running process (`imageserver serve`): the daemon's start, reload and stop, the wiring of config into
services, and what the process needs from its host (ports, file limit, systemd notify, logs).

Imports boot/ and images/, never cli/ (lint-imports).
"""
