"""The work that uses the core and the store: simulating, importing, exporting, analysing runs.

Each job is a plain function the CLI and the TUI both call; none of them imports either.
"""
