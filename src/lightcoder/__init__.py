"""lightcoder: an open implementation of the aiXcoder-7B code-completion system.

See ARCHITECTURE.md (in ../shared) for the map of stages; `lightcoder --help` for the commands.
"""

__version__ = "0.1.0"
