"""The one base of every error a user can fix: the command line prints it as one
line and exits 2, with no traceback. Each part subclasses it where it needs its own."""


class UserError(ValueError):
    """Bad input or a missing requirement, said in one line the user can act on."""
