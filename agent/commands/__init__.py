"""One module per `vobox-agent` subcommand; each exposes `register(subparsers)`."""
