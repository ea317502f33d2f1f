"""The `imageserver` command line: main.py parses and dispatches, one module per verb under commands/, and
what the verbs share (the admin API client, install progress views, the init wizard, reservation exports).

Nothing else in appliance/ imports cli/ (lint-imports). `python -m appliance.cli` runs it (__main__.py).
"""
