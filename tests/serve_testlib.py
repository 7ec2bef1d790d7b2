"""Shared by the Python server tests: the installed default model and `llmkit serve` run as a
context manager on a free loopback port (the port read from its start-up line, the process
terminated, then killed, on exit)."""
import contextlib
import os
import pathlib
import subprocess

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests


def default_model():
    """The default model's path, or None (then print why and return SKIP)."""
    home = os.environ.get("LLMKIT_HOME", str(pathlib.Path.home() / ".cache/llmkit"))
    model = pathlib.Path(home) / "models/SmolLM2-135M-Instruct-Q4_1.gguf"
    if not model.exists():
        print(f"skipped: default model not installed ({model}); run scripts/setup")
        return None
    return model


@contextlib.contextmanager
def serve(llmkit, model, *args):
    """Yields (base URL "http://127.0.0.1:PORT", port) of `llmkit serve -m MODEL --port 0 ARGS...`."""
    proc = subprocess.Popen([llmkit, "serve", "-m", str(model), "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "llmkit serve: NAME on http://127.0.0.1:PORT (...)"
        assert "http://" in line, f"server did not start: {line!r}"
        hostport = line.split("http://", 1)[1].split()[0]
        yield "http://" + hostport, int(hostport.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
