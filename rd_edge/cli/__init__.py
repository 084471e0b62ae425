"""Command-line entry points of rd-edge."""
