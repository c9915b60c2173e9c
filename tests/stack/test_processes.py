import signal
import subprocess
import sys
import time

import psutil

from cryptoctl.stack.processes import stop_process

IGNORES_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    assert stop_process(psutil.Process(proc.pid), signal.SIGTERM, grace=0.5) is True
    assert time.monotonic() - t0 >= 0.5
    assert not psutil.pid_exists(proc.pid)  # reaped by stop_process


def test_a_well_behaved_process_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(psutil.Process(proc.pid), signal.SIGTERM, grace=5) is False
    assert not psutil.pid_exists(proc.pid)
