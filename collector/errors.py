"""The collector's one-line errors and its exit codes."""

EXIT_FAILURE = 1
EXIT_USAGE = 2         # bad arguments (click's code for bad options too)
EXIT_ENVIRONMENT = 3   # missing root, bcc, tracefs, BTF, kallsyms, headers


class CollectError(Exception):
    """A one-line reason to stop, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code
