"""A plugin module that fails at import time."""

raise ImportError("this plugin's dependency is not installed")
