"""One module per `imageserver` subcommand (discovered automatically by appliance.cli)."""
