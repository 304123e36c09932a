"""The generator: ``produce --generator orders.generate:orders``.

produce calls it with the keyword arguments it declares among ``rows``, ``seed``
and ``run_id``, and stores each dict it yields as one row (keys 1..rows, in
order). The same rows and seed give the same orders, so a retried produce
writes the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

COUNTRIES = ("DE", "FR", "NL", "SE", "US", "CA")
SKUS = ("kettle", "mug", "teapot", "filter", "scale", "grinder")
STATUSES = ("paid", "paid", "paid", "shipped", "cancelled")


def orders(rows: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``rows`` orders; some are cancelled and some have a quantity of 0."""
    rng = random.Random(seed)
    for n in range(1, rows + 1):
        yield {
            "order_id": f"o{seed}-{n:08d}",
            "customer": f"c{rng.randrange(10_000):05d}",
            "country": rng.choice(COUNTRIES),
            "sku": rng.choice(SKUS),
            "quantity": rng.randint(0, 4),
            "unit_price_cents": rng.randrange(199, 20_000),
            "status": rng.choice(STATUSES),
        }
