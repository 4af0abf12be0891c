"""Reads cloakbench result files: plots, a statistical compare that gates releases, a report."""
