"""`python -m openledger_pipelines.cli`: the same as the `openledger` command."""

from openledger_pipelines.cli import main

main()
