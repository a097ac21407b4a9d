"""``python -m otcli`` runs the ``otdist`` command."""

from otcli.cli import main

main()
