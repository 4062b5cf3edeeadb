"""wgsigd: the wgsig server, a thin shell around the protocol core in ``wgsig``."""
