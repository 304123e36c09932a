"""The processor: ``shard --processor orders.enrich:enrich``.

shard calls it with a batch of rows (a list of the dicts the generator made) and
writes every value it returns. It may return fewer values than rows: cancelled
orders and orders with nothing in them are dropped, so the merged output has
fewer rows than produce made, by design.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# VAT in percent, and the region, by country.
VAT_PERCENT = {"DE": 19, "FR": 20, "NL": 21, "SE": 25, "US": 0, "CA": 5}
REGION = {"DE": "EU", "FR": "EU", "NL": "EU", "SE": "EU", "US": "NA", "CA": "NA"}


def enrich(batch: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Billable orders with their subtotal, VAT (rounded half up, in cents) and total."""
    for order in batch:
        if order["status"] == "cancelled" or order["quantity"] == 0:
            continue
        subtotal = order["quantity"] * order["unit_price_cents"]
        vat = (subtotal * VAT_PERCENT[order["country"]] + 50) // 100
        yield {
            "order_id": order["order_id"],
            "customer": order["customer"],
            "region": REGION[order["country"]],
            "sku": order["sku"],
            "quantity": order["quantity"],
            "subtotal_cents": subtotal,
            "vat_cents": vat,
            "total_cents": subtotal + vat,
        }
