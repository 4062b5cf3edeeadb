"""wgsig: WireGuard endpoint signalling, wire-compatible with the C wgsigd/wgsigc.

The protocol modules of this package form a sans-IO core: they take bytes,
addresses and the current time, and never touch sockets, clocks or random
sources themselves (randomness is passed in).  secretfile and configfile are
the shared file readers of the two programs.
"""

__version__ = "0.1.0"
