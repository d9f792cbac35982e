"""Starts and watches an `xsp3-acquire serve` child process (device property StartServer)."""
import collections
import subprocess
import threading


class ServeProcess:
    """The child process and the last lines it wrote to stderr (for the FAULT status text)."""

    def __init__(self, argv):
        self.argv = list(argv)
        self._stderr_tail = collections.deque(maxlen=20)
        try:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, errors="replace")
        except OSError as e:
            raise RuntimeError(f"cannot start {' '.join(self.argv)}: {e}") from None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        for line in self.process.stderr:
            self._stderr_tail.append(line.rstrip())

    @property
    def pid(self):
        return self.process.pid

    def exit_code(self):
        """None while it runs."""
        return self.process.poll()

    def error_line(self):
        """The last stderr line that starts with `error` (clap's usage errors end with help
        lines), else the last line that is not the start-up message, else ''."""
        lines = [line for line in self._stderr_tail if line and "serving on" not in line]
        errors = [line for line in lines if line.lower().startswith("error")]
        return (errors or lines or [""])[-1]

    def describe_exit(self):
        """Only once exit_code() is not None."""
        code = self.exit_code()
        self._reader.join(1.0)  # the last lines it wrote
        why = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = self.error_line()
        return f"xsp3-acquire serve (pid {self.pid}) {why}" + (f": {tail}" if tail else "")

    def terminate(self, timeout_s=10.0):
        """Waits for the process to exit, else SIGTERM, then SIGKILL."""
        for stop in (None, self.process.terminate, self.process.kill):
            if stop is not None:
                stop()
            try:
                self.process.wait(timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self._reader.join(timeout_s)


def serve_argv(binary, control_endpoint, bind_host, streamer_port, stream_type, monitor_port,
               output_directory, extra_args):
    """The command line that turns the device properties into serve options."""
    argv = [binary, "serve", "--control", control_endpoint, "--quiet"]
    if streamer_port > 0:
        argv += ["--stream", f"tcp://{bind_host}:{streamer_port}", "--stream-type", stream_type]
    if monitor_port > 0:
        argv += ["--monitor", f"tcp://{bind_host}:{monitor_port}"]
    if output_directory:
        argv += ["--out", output_directory]
    return argv + list(extra_args)
