"""User-facing errors.

Every problem caused by bad input (a missing file, a corrupt checkpoint, a malformed annotation file,
an unsupported setting) is raised as :class:`SamhwError` with a single-line message that names the
file or value and the problem. The CLI prints exactly that line and exits with status 2, so a user
never has to read a traceback to learn what to fix.
"""


class SamhwError(Exception):
    """An error in the user's input, reported as one line."""

    def __init__(self, message: str):
        one_line = " ".join(str(message).split())
        super().__init__(one_line)
