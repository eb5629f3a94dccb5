"""tests/xdist_compat.py is still needed: on this pytest, pytest-xdist's own `xdist_group` rename of a test is lost."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from xdist.remote import WorkerInteractor

from tests import xdist_compat


def probe() -> None:
    """The body of a test item made for the check (never run)."""


def test_xdist_loses_its_group_rename_and_the_compat_plugin_puts_it_back(request):
    item = pytest.Function.from_parent(request.node.parent, name="probe", callobj=probe)
    item.add_marker(pytest.mark.xdist_group("probe_group"))
    on_a_worker = SimpleNamespace(getvalue=lambda name: name == "loadgroup", option=SimpleNamespace(loadgroup=True))

    WorkerInteractor.pytest_collection_modifyitems(None, on_a_worker, [item])  # xdist's own rename
    assert not item.nodeid.endswith("@probe_group"), (
        "pytest-xdist's --dist loadgroup renames tests by itself again (pytest-xdist#1386 fixed): "
        "delete tests/xdist_compat.py, its pytest_plugins line in tests/conftest.py and this test"
    )
    xdist_compat.pytest_collection_modifyitems(on_a_worker, [item])
    assert item.nodeid == f"{request.node.parent.nodeid}::probe@probe_group"
