"""The command line's commands, one module per group: each defines its commands (and, for a
group such as ``models``, its Typer sub-app) and registers nothing itself;
:mod:`modelport.cli` lists them all and adds them to the app. Shared options and output
helpers are in :mod:`modelport.commands.base`. Like the rest of the command line, a module
here imports nothing heavy at import time, so ``modelport --help`` stays fast.
"""
