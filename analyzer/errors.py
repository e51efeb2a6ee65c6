"""Errors the analyzer reports as one line and an exit code (never a traceback)."""

#: exit codes, documented in ``anonanalyze --help``
EXIT_OK = 0
EXIT_INTERNAL = 1      # a bug in anonanalyze (reported as one line too)
EXIT_USAGE = 2         # click's own code for bad options
EXIT_UNREADABLE = 3    # missing, empty, truncated or non-Parquet file
EXIT_NOT_A_RUN = 4     # Parquet, but not an anonscope recording (columns, metadata)
EXIT_NEWER_SCHEMA = 5  # written by a newer anonscope schema than this analyzer reads
EXIT_OUTPUT = 6        # cannot write the -o file
EXIT_SCHEDULER = 7     # fleet --scheduler cannot be reached


class AnalyzerError(Exception):
    """A problem with the input the user can act on."""

    def __init__(self, message, code=EXIT_NOT_A_RUN):
        super().__init__(message)
        self.code = code
