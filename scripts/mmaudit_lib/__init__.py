"""mmaudit: find kthread_use_mm()/use_mm() callers without an mm_users pin."""

VERSION = "0.1.0"


class UsageError(Exception):
    """A problem with the user's input; reported as one line, exit 2."""
