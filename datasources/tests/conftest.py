import pytest

from datasources.connectors.base import forget_account_rights


@pytest.fixture(autouse=True)
def fresh_account_rights():
    """Each test asks the servers again: the per-process cache of rights starts empty."""
    forget_account_rights()
    yield
    forget_account_rights()
