"""Run the system's processes in one terminal with prefixed logs.

Each child runs in its own session so that Ctrl-C reaches only the
supervisor, which then stops the children in order and waits for them. A
child that exits is restarted after a backoff that grows while it keeps
failing (a database or Redis outage must not take the system down for good);
watchers (e.g. of the embedded servers) are polled and restart what they watch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

COLORS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
RESTART_BASE_S = 1.0
RESTART_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long starts again from the shortest backoff
WATCH_EVERY_S = 2.0

Watcher = Callable[[], str | None]  # restarts what it watches if needed; says so


@dataclass
class Program:
    name: str
    argv: list[str]
    once: bool = False  # a job that may finish: a clean exit is not restarted
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row, each after less than STABLE_AFTER_S
    restart_at: float | None = None  # when the exited child is due to start again


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class Supervisor:
    def __init__(self, programs: list[Program], out=None, watchers: dict[str, Watcher] | None = None):
        self.programs = programs
        self.watchers = watchers or {}
        self.out = out or sys.stdout
        self.stopping = threading.Event()
        self.width = max(len(name) for name in [*(p.name for p in programs), *self.watchers])
        self.lock = threading.Lock()
        self.color = self.out.isatty()

    def log(self, name: str, line: str) -> None:
        index = next((i for i, p in enumerate(self.programs) if p.name == name), 0)
        prefix = f"{name:<{self.width}} |"
        if self.color:
            prefix = f"{COLORS[index % len(COLORS)]}{prefix}{RESET}"
        with self.lock:
            self.out.write(f"{prefix} {line.rstrip()}\n")
            self.out.flush()

    def start(self, program: Program) -> None:
        program.proc = subprocess.Popen(
            program.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
            bufsize=1,
        )
        program.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(program, program.proc), daemon=True).start()
        self.log(program.name, f"started (pid {program.proc.pid})")

    def _pump(self, program: Program, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log(program.name, line)

    def run(self) -> None:
        """Start everything, restart what dies (with backoff), stop all on SIGINT/SIGTERM."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        for program in self.programs:
            self.start(program)
        watched = 0.0
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            if self.watchers and now - watched >= WATCH_EVERY_S:
                self.watch()
                watched = now
            for program in self.programs:
                self.tend(program, now)
        self.stop()

    def tend(self, program: Program, now: float) -> None:
        """Notice an exit and schedule the restart; start the child when it is due."""
        if program.restart_at is not None:
            if now >= program.restart_at:
                program.restart_at = None
                self.start(program)
            return
        code = program.proc.poll() if program.proc else None
        if code is None:
            return
        if code == 0 and program.once:
            self.log(program.name, "finished")
            program.proc = None
            return
        program.failures = 1 if now - program.started_at >= STABLE_AFTER_S else program.failures + 1
        delay = min(RESTART_MAX_S, RESTART_BASE_S * 2 ** (program.failures - 1))
        program.restart_at = now + delay
        self.log(program.name, f"exited with {code}; restarting in {delay:.0f}s")

    def watch(self) -> None:
        for name, watcher in self.watchers.items():
            try:
                if message := watcher():
                    self.log(name, message)
            except Exception as exc:  # the next round tries again
                self.log(name, f"{type(exc).__name__}: {exc}")

    def stop(self, timeout: float = 15.0) -> None:
        running = [p for p in self.programs if p.proc and p.proc.poll() is None]
        for program in running:
            self.log(program.name, "stopping")
            self._signal(program, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for program in running:
            try:
                program.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(program.name, "did not stop in time; killing")
            # Children such as pool workers share the session: take them too.
            self._signal(program, signal.SIGKILL)
            program.proc.wait()

    @staticmethod
    def _signal(program: Program, sig: int) -> None:
        try:
            os.killpg(program.proc.pid, sig)
        except ProcessLookupError:
            pass
