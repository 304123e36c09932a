"""Executing a workflow: the run, scheduling, steps, DAGs, hooks, synchronization, memoization and
metrics; pods are :mod:`argo_local.pods`."""
