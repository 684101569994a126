"""``python -m dignity`` runs the command line, the same as the ``dignity`` script."""

from dignity.cli import main

main()
