"""Orders: an example of your own code in the workers pipeline.

``orders.generate:orders`` makes the rows (produce's ``--generator``) and
``orders.enrich:enrich`` processes them in every shard (``--processor``).
"""
