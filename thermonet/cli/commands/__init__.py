"""One module per ``thermonet`` subcommand; see :mod:`thermonet.cli`."""
