"""workers: Argo Workflows dynamic fan-out / fan-in as reusable steps.

The four steps are modules run with ``python -m``: :mod:`workers.produce`,
:mod:`workers.split`, :mod:`workers.shard` and :mod:`workers.merge`.
"""

__version__ = "0.1.0"
