"""wgsig: WireGuard endpoint signalling, wire-compatible with the C wgsigd/wgsigc.

The modules of this package form a sans-IO core: they take bytes, addresses
and the current time, and never touch sockets, files, clocks or random sources
themselves (randomness is passed in).  The one exception is ``wgsig.host``,
the file and environment readers the two programs share; the core never
imports it.
"""

__version__ = "0.1.0"
