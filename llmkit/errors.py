"""The exceptions llmkit raises on purpose; the CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class LlmkitError(Exception):
    """Base of every deliberate llmkit error; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(LlmkitError, ValueError):
    """Bad input from the user: a config value, a file, a name, a parameter (CLI exit code 2)."""

    exit_code = 2


class RegistryError(UsageError):
    """A component or plugin problem: unknown or duplicate names, bad parameters."""


class WorkError(LlmkitError, RuntimeError):
    """A failure while doing the work that the input itself did not cause (CLI exit code 1)."""

    exit_code = 1
