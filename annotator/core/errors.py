"""Errors a user caused (bad path, corrupt file, wrong keypoint count).

The CLI prints these as one line naming the file and the problem and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, described in one line."""
