"""Process exit codes shared by every step; docs/reference/exit-codes.md documents them.

Argo's ``retryStrategy`` should retry :data:`TRANSIENT` only: every other
non-zero code is permanent and retrying it wastes a pod start.
"""

OK = 0
"""The step did its work and wrote its declared outputs."""

USAGE = 2
"""Bad input: a flag, a shard item, a count file, a name. Permanent (argparse also uses 2)."""

PROCESSING = 3
"""The user's generator or processor failed, or produced values we cannot serialize."""

INCOMPLETE = 4
"""The fan-in found missing, unverified or inconsistent shards and wrote nothing."""

INTERNAL = 70
"""A bug in workers itself: an exception it does not expect (EX_SOFTWARE from sysexits.h).
Permanent: retrying runs the same code again."""

TRANSIENT = 75
"""A fault that clears by itself: unreachable, overloaded, throttled, full (EX_TEMPFAIL)."""

ALL = {
    "OK": OK,
    "USAGE": USAGE,
    "PROCESSING": PROCESSING,
    "INCOMPLETE": INCOMPLETE,
    "INTERNAL": INTERNAL,
    "TRANSIENT": TRANSIENT,
}
