"""The one exception type that reaches the user as a single line instead of a traceback."""


class UsageError(Exception):
    """Bad input the user can fix: a parameter, a file, a folder.

    The message names the offending thing and the fix; the CLI prints it on one
    line and exits with code 2.
    """
