"""`python -m mcdata` runs the command-line interface."""

from mcdata.cli import main

main()
