"""A test app: a session model of the project's own, and a row that points to it."""
