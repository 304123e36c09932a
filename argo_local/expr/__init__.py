"""Argo's expression languages: ``{{...}}`` substitution, ``depends``, expr-lang, govaluate, sprig,
jsonpath, Go's time and JSON/printing. Imports nothing else of the runner."""
