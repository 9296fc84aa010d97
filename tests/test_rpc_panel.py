"""The "Remote workers" panel: add, remove and test endpoints (a real worker and a closed
port), the placement it hands to the run settings, and where the last run's layers were."""

from __future__ import annotations

from typing import Any

import pytest
from test_rpc_workers import Worker, free_port

from app.core import rpc, rpc_native
from app.ui.workers_panel import WorkersPanel

pytestmark = pytest.mark.skipif(not rpc_native.supports_rpc(), reason=rpc.NO_RPC)


@pytest.fixture
def panel(qtbot: Any) -> WorkersPanel:
    widget = WorkersPanel()
    qtbot.addWidget(widget)
    return widget


def _add(qtbot: Any, panel: WorkersPanel, text: str) -> tuple[str, bool, str]:
    """Type an address and press Add; the result of the test that follows."""
    panel.address.setText(text)
    with qtbot.waitSignal(panel.tested, timeout=30_000) as signal:
        panel.add_button.click()
    endpoint, ok, line = signal.args
    return endpoint, ok, line


def test_a_worker_is_tested_when_added(qtbot: Any, panel: WorkersPanel) -> None:
    worker = Worker()
    try:
        endpoint, ok, line = _add(qtbot, panel, worker.endpoint)
        assert (endpoint, ok) == (worker.endpoint, True)
        assert f"RPC {'.'.join(map(str, rpc.PROTOCOL))}" in line and "free of" in line
        assert panel.list.item(0).text() == f"{worker.endpoint} — {line}"
        assert panel.endpoints() == [worker.endpoint]
        assert panel.placement() == {"rpc": [worker.endpoint], "rpc_split": [],
                                     "gpu_layers": -1}
        panel.layers.setValue(5)
        assert panel.placement()["gpu_layers"] == 5
        # Test again, all of them (none selected): the same answer.
        with qtbot.waitSignal(panel.tested, timeout=30_000) as again:
            panel.test_button.click()
        assert again.args[:2] == [worker.endpoint, True]
    finally:
        worker.stop()


def test_a_closed_port_tests_as_unreachable(qtbot: Any, panel: WorkersPanel) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    assert _add(qtbot, panel, endpoint)[:2] == (endpoint, False)
    assert "connection refused" in panel.list.item(0).text()


def test_bad_and_repeated_addresses_are_refused(qtbot: Any, panel: WorkersPanel) -> None:
    panel.address.setText("[::1]:50052")
    panel.add_button.click()
    assert panel.endpoints() == [] and "IPv6" in panel.message.text()
    panel.address.setText("127.0.0.1")  # an address alone takes the default port
    with qtbot.waitSignal(panel.tested, timeout=30_000):
        panel.add_button.click()
    assert panel.endpoints() == [f"127.0.0.1:{rpc.DEFAULT_PORT}"]
    panel.address.setText(f"127.0.0.1:{rpc.DEFAULT_PORT}")
    panel.add_button.click()
    assert panel.endpoints() == [f"127.0.0.1:{rpc.DEFAULT_PORT}"]
    assert "already in the list" in panel.message.text()


def test_remove_and_restore(qtbot: Any, panel: WorkersPanel) -> None:
    with qtbot.waitSignal(panel.workers_changed):
        panel.set_endpoints(["a:1", "b:2", "not an address"])
    assert panel.endpoints() == ["a:1", "b:2"]
    panel.list.item(0).setSelected(True)
    with qtbot.waitSignal(panel.workers_changed):
        panel.remove_button.click()
    assert panel.endpoints() == ["b:2"]
    panel.set_endpoints([])
    assert panel.placement() == {"rpc": [], "rpc_split": [], "gpu_layers": 0}


def test_where_the_last_run_put_the_layers(panel: WorkersPanel) -> None:
    assert "all layers on this machine" in panel.where.text()
    panel.show_devices([rpc.DevicePlacement(rpc.LOCAL, "CPU", 0, None, None, 5).to_dict(),
                        rpc.DevicePlacement("a:1", "RPC0", 3, 0, 2, 9, 1, 2).to_dict()])
    assert "layers 0–2 (with the output layer) on a:1" in panel.where.text()
