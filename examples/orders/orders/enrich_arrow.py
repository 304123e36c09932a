"""The processor on Arrow batches: ``shard --batch-format pyarrow --processor orders.enrich_arrow:enrich``.

The same rules and the same output as :mod:`orders.enrich`, column at a time: shard calls it
with one ``pyarrow.RecordBatch`` per batch and writes the table it returns. Needs the
``arrow`` extra (``pip install 'fanout-workers[arrow]'``; the workers image has it).
"""

from __future__ import annotations

from typing import Any

from orders.enrich import REGION, VAT_PERCENT


def enrich(batch: Any) -> Any:
    """Billable orders with their subtotal, VAT (rounded half up, in cents) and total."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = pc.and_(pc.not_equal(batch["status"], "cancelled"), pc.not_equal(batch["quantity"], 0))
    orders = batch.filter(keep)
    countries = pa.array(list(VAT_PERCENT))
    where = pc.index_in(orders["country"], value_set=countries)
    vat_percent = pc.take(pa.array(list(VAT_PERCENT.values()), pa.int64()), where)
    region = pc.take(pa.array([REGION[c] for c in VAT_PERCENT]), where)
    subtotal = pc.multiply(orders["quantity"], orders["unit_price_cents"])
    # Integer arithmetic, as the rows version: (subtotal * percent + 50) // 100 is half up.
    vat = pc.divide(pc.add(pc.multiply(subtotal, vat_percent), 50), 100)
    return pa.table(
        {
            "order_id": orders["order_id"],
            "customer": orders["customer"],
            "region": region,
            "sku": orders["sku"],
            "quantity": orders["quantity"],
            "subtotal_cents": subtotal,
            "vat_cents": vat,
            "total_cents": pc.add(subtotal, vat),
        }
    )
