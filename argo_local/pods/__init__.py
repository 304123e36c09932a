"""Pods as local processes: their containers, environment, sandbox, artifacts, daemons and the
inputs/outputs that flow between nodes."""
