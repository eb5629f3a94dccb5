"""pytest-xdist 3.8.0 on pytest 9.2.0: put the `xdist_group` back into node ids, or `--dist loadgroup` groups nothing.

xdist tells its scheduler a test's group by renaming the test `<node id>@<group>` in `item._nodeid`; pytest 9.2
keeps node ids in `item._id`, so the rename is lost and every test is scheduled alone, silently
(https://github.com/pytest-dev/pytest-xdist/issues/1386, fix proposed in pull request 1388). After xdist's own
hook, this one writes the name where pytest 9.2 reads it. It does nothing once xdist's rename takes effect again;
tests/pipeline/test_xdist_compat.py fails then, so this module and its `pytest_plugins` line can go.
"""

from __future__ import annotations

import pytest
from _pytest.nodeid import NodeId


def group_of(item: pytest.Item) -> str | None:
    """The group xdist names a test after: its groups' names sorted and joined, as xdist's remote.py does."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) or None


@pytest.hookimpl(trylast=True)  # after xdist's own rename
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers by --dist loadgroup
        return
    for item in items:
        group = group_of(item)
        if group and not item.nodeid.endswith(f"@{group}"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")
