"""wgsigc: the wgsig client, a thin shell around the protocol core in ``wgsig``."""
