"""What the pages share about HTMX requests."""


def htmx_partial(request) -> bool:
    """True for an HTMX request that wants a fragment; restoring history after a cache
    miss wants the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request
