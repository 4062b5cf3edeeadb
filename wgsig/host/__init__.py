"""Host-side helpers both programs share: they read files and the environment.

``secretfile`` reads and creates group secret files and knows systemd's credential paths;
``configfile`` reads TOML configuration files, checks their values and knows systemd's state
directory.  They are not part of the sans-IO core: the core (the rest of ``wgsig``) never
imports them; the shells (``wgsigd``, ``wgsigc``) do.
"""
