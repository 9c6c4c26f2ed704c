"""Command groups that live beside the mode they drive.

Each module here registers its commands on :data:`modelport.cli.app` when imported;
``modelport.cli`` imports them all once ``app`` exists. Like the rest of the command line,
a module must import nothing heavy at import time.
"""

MODULES = ("retrain", "learn", "monitor", "ui")
