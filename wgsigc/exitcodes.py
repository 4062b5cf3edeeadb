"""wgsigc's exit codes, shared by print mode (the C client's codes) and kernel mode."""

EXIT_OK = 0
EXIT_SOCKET = 1  # socket or netlink error, missing capability
EXIT_NO_ANSWER = 2  # no valid answer from any server
EXIT_RESOLVE = 3  # a server name does not resolve
EXIT_INTERFACE = 4  # kernel mode: interface missing, not WireGuard, changed mid-run
EXIT_PEER = 5  # kernel mode: a peer cannot be reached (hairpin or symmetric NAT, no handshake)
EXIT_USAGE = 6  # usage, configuration or secret file error
