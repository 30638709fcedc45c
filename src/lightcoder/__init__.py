"""lightcoder: an open implementation of the aiXcoder-7B code-completion system.

See docs/architecture.md for the map of stages and modules; `lightcoder --help` for the commands.
"""

__version__ = "0.1.0"
