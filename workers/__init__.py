"""workers: Argo Workflows dynamic fan-out / fan-in as reusable steps.

The four steps are modules run with ``python -m``: :mod:`workers.produce`,
:mod:`workers.split`, :mod:`workers.shard` and :mod:`workers.merge`; the ``workers``
command (:mod:`workers.__main__`) runs them by name. The distribution is ``fanout-workers``.
"""

__version__ = "0.1.0"
"""The version: the one source, read by setuptools for the distribution (fanout-workers) and
printed by every ``--version``."""


def version_text() -> str:
    """What ``--version`` prints, for the ``workers`` command and every step alike."""
    return f"workers {__version__}"
