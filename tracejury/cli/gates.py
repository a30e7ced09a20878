"""Commands on gates: run, show, history, report, diff."""
