"""The one error the services raise for a request that cannot be done as asked."""


class ProjectError(Exception):
    """A user's request cannot be done as asked; the message says what is wrong and what to do."""
