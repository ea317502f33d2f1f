"""`python -m appliance.cli ...`: the same as the `imageserver` script (how the tests and the lab start it)."""

import sys

from appliance.cli.main import main

sys.exit(main())
