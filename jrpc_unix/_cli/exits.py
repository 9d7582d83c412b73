"""The exit codes of ``jrpc-unix``: what a script can tell from ``$?``.

Their own module so that :mod:`.main` (which reports failures) and the commands (which return
codes) both import them from below, with no import between the two.
"""

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RPC_ERROR",
    "EXIT_TERMINATED",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
]

EXIT_OK = 0  # success
EXIT_RPC_ERROR = 1  # the server answered with a JSON-RPC error
EXIT_USAGE = 2  # bad command line or input (argparse's own code)
EXIT_TRANSPORT = 3  # cannot connect, connection lost, timeout, protocol violation, cannot listen
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # `watch` stopped by SIGTERM (128 + SIGTERM), after unsubscribing
