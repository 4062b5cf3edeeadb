"""Host-side helpers both programs share: they read and write files and read the environment.

``secretfile`` reads and creates group secret files and knows systemd's credential paths;
``configfile`` reads TOML configuration files, checks their values and knows systemd's state
directory; ``atomicfile`` replaces a file atomically (the metrics files).  They are not part
of the sans-IO core: the core (the rest of ``wgsig``) never imports them; the shells
(``wgsigd``, ``wgsigc``) do.
"""
