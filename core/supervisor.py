"""Run the system's processes in one terminal with prefixed logs.

Each child runs in its own session so that Ctrl-C reaches only the
supervisor, which then stops the children in order and waits for them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

COLORS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
MAX_RAPID_RESTARTS = 5


@dataclass
class Program:
    name: str
    argv: list[str]
    once: bool = False  # a job that may finish: a clean exit is not restarted
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: list[float] = field(default_factory=list)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class Supervisor:
    def __init__(self, programs: list[Program], out=None):
        self.programs = programs
        self.out = out or sys.stdout
        self.stopping = threading.Event()
        self.width = max(len(p.name) for p in programs)
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

    def run(self) -> int:
        """Start everything, restart what dies, stop all on SIGINT/SIGTERM."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        for program in self.programs:
            self.start(program)
        status = 0
        while not self.stopping.wait(0.5):
            for program in self.programs:
                code = program.proc.poll() if program.proc else None
                if code is None:
                    continue
                if code == 0 and program.once:
                    self.log(program.name, "finished")
                    program.proc = None
                    continue
                now = time.monotonic()
                program.restarts = [t for t in program.restarts if now - t < 60] + [now]
                if len(program.restarts) > MAX_RAPID_RESTARTS:
                    self.log(program.name, f"exited with {code} too often; stopping everything")
                    status = 1
                    self.stopping.set()
                    break
                self.log(program.name, f"exited with {code}; restarting")
                self.start(program)
        self.stop()
        return status

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
