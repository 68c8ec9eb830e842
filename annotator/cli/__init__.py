"""The `pose-annotator` command line: one module per command group, each thin over the packages.

May import: everything. Heavy modules are imported by the subcommand that needs them.
"""
from annotator.cli.base import main

__all__ = ["main"]
