"""What the operator's CLI commands (`keybind submit/status/cancel`) use: an API client, the
instances-file reader and the live progress view. They talk to the HTTP API, never the DB."""
