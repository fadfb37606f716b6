"""Background Dagster processes in tests (dagster dev, the daemon): stop them and all their children."""

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the process group started with `start_new_session=True`, SIGKILL it if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
