"""The prediction endpoint's rate limit: one database row per caller and scope.

DRF's ScopedRateThrottle keeps each caller's request times in the cache; in the
database cache that is a read, then a count of the table, a read and an update in a
write transaction on every request (1-2 ms on SQLite). This throttle keeps, per
(caller, scope), one `ThrottleCounter` row and allows a request with one UPDATE:

Sliding window approximation (the algorithm Cloudflare and others describe): with a
rate of N requests per period P, time t falls in period k = floor(t / P), a fraction
f = (t - kP) / P into it. The caller has made `current` requests in period k and
`previous` in period k - 1, and the requests of the last P seconds are estimated as
previous * (1 - f) + current (those of the period before spread evenly over it). A
request is allowed while that estimate is below N, and then counted in `current`. Unlike
a fixed window it never lets 2N through around a period's boundary; it is exact when the
previous period's requests were spread evenly, and never lets more than 2N through in
any P seconds.

The test and the count are one statement, so concurrent requests of one caller in any
number of processes cannot both take the last place: the database serialises the
UPDATEs of the row. Refused requests are not counted (as DRF does), and the Retry-After
of a refusal is when the estimate will fall below N. The rate is per caller across all
web processes, and the state is durable: nothing lives in a process's memory.
"""

import math
import time

from django.db import IntegrityError, connection, transaction
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from experiments.models import ThrottleCounter

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'600/minute' -> (600, 60), as DRF reads a rate."""
    number, period = rate.split("/")
    return int(number), PERIODS[period[0]]


def estimate(slot: int, current: int, previous: int, now_slot: int, fraction: float) -> float:
    """Requests of the last period estimated from a row read at `now_slot` + `fraction`."""
    if slot == now_slot:
        return previous * (1 - fraction) + current
    if slot == now_slot - 1:
        return current * (1 - fraction)
    return 0.0


_statements: dict[str, str] = {}


def _take_sql() -> str:
    """The one statement of take(): count the request if the row's estimate allows it.

    Written out rather than built with the ORM each time: building this UPDATE from
    Case/When expressions took 1.1 ms a request, running it 0.02 ms (SQLite).
    Parameters: slot, slot - 1, slot, slot, ident, scope, slot, 1 - f, slot - 1, 1 - f, N.
    """
    vendor = connection.vendor
    if vendor not in _statements:
        q = connection.ops.quote_name
        table = q(ThrottleCounter._meta.db_table)
        slot, current, previous = q("slot"), q("current"), q("previous")
        # The order of the assignments matters: MySQL and MariaDB give a later one the
        # new value of an earlier one (PostgreSQL and SQLite the old), so each reads
        # only columns assigned after it. WHERE reads the old values everywhere.
        _statements[vendor] = (
            f"UPDATE {table} SET "
            f"{previous} = CASE WHEN {slot} = %s THEN {previous} "
            f"WHEN {slot} = %s THEN {current} ELSE 0 END, "
            f"{current} = CASE WHEN {slot} = %s THEN {current} + 1 ELSE 1 END, "
            f"{slot} = %s "
            f"WHERE {q('ident')} = %s AND {q('scope')} = %s AND "
            f"CASE WHEN {slot} = %s THEN {previous} * %s + {current} "
            f"WHEN {slot} = %s THEN {current} * %s ELSE 0 END < %s"
        )
    return _statements[vendor]


def take(ident: str, scope: str, limit: int, period: int, now: float | None = None) -> float:
    """Count one request of `ident` in `scope` if the rate allows it: 0.0, or else the
    seconds until it would (a refused request is not counted)."""
    now = time.time() if now is None else now
    slot = int(now // period)
    fraction = now / period - slot
    rows = ThrottleCounter.objects.filter(ident=ident, scope=scope)
    stay = 1 - fraction
    params = [slot, slot - 1, slot, slot, ident, scope, slot, stay, slot - 1, stay, limit]
    for _ in range(3):  # a lost race to create the row, or a period ending meanwhile
        with connection.cursor() as cursor:
            cursor.execute(_take_sql(), params)
            moved = cursor.rowcount
        if moved:
            return 0.0
        row = rows.values_list("slot", "current", "previous").first()
        if row is None:
            try:
                with transaction.atomic():
                    ThrottleCounter.objects.create(
                        ident=ident, scope=scope, slot=slot, current=1, previous=0
                    )
                return 0.0
            except IntegrityError:
                continue  # another request created it first: test it again
        wait = seconds_until_allowed(*row, limit, period, now)
        if wait > 0:
            return wait
    return 0.0  # the row changed under every attempt: let this one through


def seconds_until_allowed(
    slot: int, current: int, previous: int, limit: int, period: int, now: float
) -> float:
    """When the estimate of a row read at `now` falls below `limit` (0: already)."""
    now_slot = int(now // period)
    fraction = now / period - now_slot
    if estimate(slot, current, previous, now_slot, fraction) < limit:
        return 0.0
    if slot == now_slot - 1:  # only the previous period counts: it fades during this one
        current, previous, slot = 0, current, now_slot
    if current < limit:  # previous * (1 - f) + current < limit, within this period
        until = 1 - (limit - current) / previous
        return max((until - fraction) * period, 0.0) or 1e-3
    # Full in this period already: the next one, where current * (1 - g) < limit.
    until = 1 - limit / current
    return (1 - fraction + until) * period


class RateThrottle(BaseThrottle):
    """Throttles at the rate REST_FRAMEWORK's DEFAULT_THROTTLE_RATES gives `scope`, per
    user (per address when anonymous)."""

    THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES  # as DRF's, read at import
    scope = ""

    def allow_request(self, request, view):
        limit, period = parse_rate(self.THROTTLE_RATES[self.scope])
        user = request.user
        if user and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        self.seconds = take(ident, self.scope, limit, period)
        return self.seconds == 0

    def wait(self):
        return math.ceil(self.seconds)


class ApiRateThrottle(RateThrottle):
    """Every API request (MLOPS_API_RATE). Unauthenticated ones are refused before any
    throttle is asked, so only callers with a token or a session are counted."""

    scope = "api"


class PredictRateThrottle(RateThrottle):
    """Predictions have a rate of their own (MLOPS_PREDICT_RATE), instead of the API's."""

    scope = "predict"
