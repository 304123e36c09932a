"""The workflow document: loading, Argo's defaults, validation before anything runs, ConfigMaps and
the records (nodes, attempts) a run keeps. Imports only :mod:`argo_local.expr`."""
