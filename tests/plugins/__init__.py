"""User-code stand-ins the tests pass as --generator / --processor import paths."""
