"""``python -m actionlinks`` runs the CLI."""

from actionlinks.cli import main

main()
