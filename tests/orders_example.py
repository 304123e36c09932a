"""The examples/orders package as the tests see it: its rows, and what its processor must make.

The expected output is computed here from the generator's rows with the example's published
rules (drop cancelled and empty orders; subtotal, VAT half up, total) written again with
Decimal, so a bug in orders/enrich.py cannot hide behind a test that calls it.
"""

from __future__ import annotations

import runpy
import shutil
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "orders"
GENERATOR = "orders.generate:orders"
PROCESSOR = "orders.enrich:enrich"
VAT_PERCENT = {"DE": 19, "FR": 20, "NL": 21, "SE": 25, "US": 0, "CA": 5}
REGION = {"DE": "EU", "FR": "EU", "NL": "EU", "SE": "EU", "US": "NA", "CA": "NA"}


def generated(rows: int, seed: int) -> list[dict[str, Any]]:
    """The generator's rows, loaded from its file (no ``orders`` on this process's path)."""
    module = runpy.run_path(str(EXAMPLE / "orders" / "generate.py"))
    return list(module["orders"](rows=rows, seed=seed))


def expected(rows: int, seed: int) -> list[dict[str, Any]]:
    """What the merged output must hold, in key order."""
    out = []
    for order in generated(rows, seed):
        if order["status"] == "cancelled" or order["quantity"] < 1:
            continue
        subtotal = order["quantity"] * order["unit_price_cents"]
        vat = int(
            (Decimal(subtotal) * VAT_PERCENT[order["country"]] / 100).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            )
        )
        out.append(
            {
                "order_id": order["order_id"],
                "customer": order["customer"],
                "region": REGION[order["country"]],
                "sku": order["sku"],
                "quantity": order["quantity"],
                "subtotal_cents": subtotal,
                "vat_cents": vat,
                "total_cents": subtotal + vat,
            }
        )
    return out


def copy_to(folder: Path) -> Path:
    """A copy of the example project outside the repository (no build or cache leftovers)."""
    shutil.copytree(
        EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    return folder


WHEEL = "orders-0.1.0-py3-none-any.whl"


def wheel_in(folder: Path) -> Path:
    """The example as a pure-Python wheel (a zip: the package and its dist-info), as ``pip wheel``
    lays it out; made here so the tests need no build backend or index."""
    path = folder / WHEEL
    dist = "orders-0.1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for module in sorted((EXAMPLE / "orders").glob("*.py")):
            zf.write(module, f"orders/{module.name}")
        zf.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: orders\nVersion: 0.1.0\n")
        zf.writestr(
            f"{dist}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{dist}/RECORD", "")
    return path
