import os
import signal
import threading

import pytest

from cryptoctl.cli.signals import stop_on_signals


def test_first_signal_stops_second_ctrl_c_aborts() -> None:
    stop = threading.Event()
    calls: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), stop_on_signals(stop, lambda: calls.append("stop")):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set() and calls == ["stop"]
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
        assert calls == ["stop"]
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_nothing_is_installed() -> None:
    stop = threading.Event()
    seen: list[object] = []

    def worker() -> None:
        with stop_on_signals(stop):
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before] and not stop.is_set()
