"""The sandbox that runs model-written Python: limits, timeout, and what the code may touch."""

from __future__ import annotations

import os
import resource
import socket
import stat
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from dllm_gym.tasks.sandbox import SandboxResult, run_python, sandbox_capabilities

TIMEOUT = 2.0
SLACK = 3.0  # seconds a timed-out call may take beyond its timeout
CAPABILITIES = sandbox_capabilities()


def run(code: str, **kwargs) -> SandboxResult:
    kwargs.setdefault("timeout", TIMEOUT)
    return run_python(textwrap.dedent(code), **kwargs)


def sandbox_processes(marker: str) -> list[int]:
    """Ids of live processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_passing_code_passes():
    result = run(
        """
        import os, sys
        print('hello', sum(range(4)))
        print('oops', file=sys.stderr)
        open(os.devnull, 'w').write('discarded')
        """
    )
    assert result.passed and result.returncode == 0 and not result.timed_out
    assert result.stdout == "hello 6\n"
    assert result.stderr == "oops\n"
    assert result.namespaces == CAPABILITIES.namespaces
    assert result.read_only_root == CAPABILITIES.read_only_root


def test_failing_assert_fails():
    result = run("assert 1 + 1 == 3, 'bad sum'")
    assert not result.passed and result.returncode == 1 and not result.timed_out
    assert "AssertionError: bad sum" in result.stderr


def test_nonzero_exit_fails_and_main_blocks_follow_run_name():
    code = "if __name__ == '__main__':\n    raise SystemExit(3)\nprint('ran as', __name__)"
    assert run(code).returncode == 3
    as_module = run(code, run_name="solution")
    assert as_module.passed and as_module.stdout == "ran as solution\n"


def test_sleeping_forever_times_out_promptly():
    start = time.monotonic()
    result = run(
        """
        import os, time
        print(os.path.dirname(os.getcwd()), flush=True)
        while True:
            time.sleep(1)
        """
    )
    took = time.monotonic() - start
    assert result.timed_out and not result.passed and result.returncode < 0
    assert TIMEOUT <= took < TIMEOUT + SLACK
    root = result.stdout.strip()
    assert root.startswith("/") and not os.path.exists(root)  # the temp directory is gone
    assert sandbox_processes(root) == []  # and nothing of the run is left


def test_busy_loop_times_out():
    start = time.monotonic()
    result = run("while True:\n    pass")
    assert result.timed_out and not result.passed
    assert time.monotonic() - start < TIMEOUT + SLACK


def test_allocating_10_gb_fails_and_this_process_is_unharmed():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run("data = bytearray(10 * 1024**3)\nprint('allocated', len(data))", memory_mb=256)
    assert not result.passed and "allocated" not in result.stdout
    assert "MemoryError" in result.stderr or result.returncode < 0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    assert after - before < 200 * 1024
    assert run("print(sum(range(10)))", memory_mb=256).stdout == "45\n"


def test_deleting_files_in_its_cwd_only_affects_its_temp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the caller's cwd is not the child's
    marker = tmp_path / "marker.txt"
    marker.write_text("keep me")
    result = run(
        """
        import os, shutil, tempfile
        os.makedirs("sub/deeper")
        with open("sub/deeper/file.txt", "w") as f:
            f.write("scratch")
        with open("top.txt", "w") as f:
            f.write("scratch")
        with tempfile.NamedTemporaryFile(delete=False) as f:  # TMPDIR is the temp dir
            print(os.path.dirname(f.name) == os.getcwd())
        for name in os.listdir("."):
            if os.path.isdir(name):
                shutil.rmtree(name)
            else:
                os.remove(name)
        print(os.listdir("."), os.getcwd())
        """
    )
    assert result.passed, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "True"
    listing, cwd = lines[1].split(" ", 1)
    assert listing == "[]"
    assert Path(cwd) != tmp_path and not Path(cwd).exists()
    assert marker.read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["marker.txt"]


OUTSIDE_WRITES = {
    "open-write": "open(TARGET, 'w').write('overwritten')",
    "open-append": "open(TARGET, 'a').write('appended')",
    "open-create": "open(NEW, 'x').write('created')",
    "io-fileio": "import io\nio.FileIO(TARGET, 'w').write(b'overwritten')",
    "os-open": "import os\nfd = os.open(TARGET, os.O_WRONLY | os.O_TRUNC)\nos.write(fd, b'x')",
    "pathlib": "import pathlib\npathlib.Path(NEW).write_text('created')",
    "relative-dotdot": "import os\nopen(os.path.relpath(TARGET), 'w').write('overwritten')",
    "symlink": "import os\nos.symlink(TARGET, 'link')\nopen('link', 'w').write('overwritten')",
    "hardlink": "import os\nos.link(TARGET, 'hard')\nopen('hard', 'w').write('overwritten')",
    "remove": "import os\nos.remove(TARGET)",
    "rename-out": "import os\nos.rename(TARGET, 'stolen.txt')",
    "rename-in": "import os\nopen('mine.txt', 'w').close()\nos.replace('mine.txt', TARGET)",
    "truncate": "import os\nos.truncate(TARGET, 0)",
    "chmod": "import os\nos.chmod(TARGET, 0o777)",
    "mkdir": "import os\nos.mkdir(NEW)",
    "rmtree": "import os, shutil\nshutil.rmtree(os.path.dirname(TARGET))",
    "shutil-move": "import shutil\nshutil.move(TARGET, 'moved.txt')",
    "shutil-copy": "import shutil\nopen('x.txt', 'w').write('copied')\nshutil.copy('x.txt', NEW)",
    "rmdir-parent": "import os\nos.rmdir('..')",
}


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "guard-only"])
@pytest.mark.parametrize("name", sorted(OUTSIDE_WRITES))
def test_changing_files_outside_its_temp_dir_fails(name, namespaces, tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("original")
    target.chmod(0o640)
    new = tmp_path / "new.txt"
    code = f"TARGET = {str(target)!r}\nNEW = {str(new)!r}\n{OUTSIDE_WRITES[name]}\n"
    result = run(code, namespaces=namespaces)
    assert not result.passed
    assert "PermissionError: sandbox:" in result.stderr
    assert target.read_text() == "original"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not new.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["target.txt"]


PROCESS_STARTS = {
    "subprocess-run": "import subprocess\nsubprocess.run(['touch', MARKER])",
    "subprocess-popen": "import subprocess\nsubprocess.Popen(['touch', MARKER]).wait()",
    "os-system": "import os\nos.system('touch ' + MARKER)",
    "os-popen": "import os\nos.popen('touch ' + MARKER).read()",
    "os-fork": "import os\nif os.fork() == 0:\n    open(MARKER, 'w')",
    "os-posix-spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', MARKER], {})",
    "os-execv": "import os\nos.execv('/usr/bin/touch', ['touch', MARKER])",
    "os-spawnv": "import os\nos.spawnv(os.P_WAIT, '/usr/bin/touch', ['touch', MARKER])",
    "multiprocessing": "import multiprocessing as mp\nmp.Process(target=print).start()",
    "os-kill": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("name", sorted(PROCESS_STARTS))
def test_starting_processes_fails(name, tmp_path):
    marker = tmp_path / "spawned"
    result = run(f"MARKER = {str(marker)!r}\n{PROCESS_STARTS[name]}\n")
    assert not result.passed
    assert "PermissionError: sandbox:" in result.stderr
    assert not marker.exists()


@pytest.fixture
def listener():
    """A TCP socket listening on this machine's loopback, non-blocking."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        server.accept()


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.socket()",
        "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)",
        "import socket\nsocket.socketpair()",
        "import _socket\n_socket.socket()",
    ],
    ids=["socket", "create_connection", "socketpair", "raw-socket"],
)
def test_opening_sockets_fails(code, listener):
    result = run(f"PORT = {listener.getsockname()[1]}\n{code}\n")
    assert not result.passed
    assert "PermissionError: sandbox: " in result.stderr
    assert_no_connection(listener)


@pytest.mark.skipif(not CAPABILITIES.network_isolated, reason="unshare --net is not permitted")
def test_network_namespace_holds_when_the_guard_is_bypassed(listener):
    # The guard is best effort: the original socket class is one step up the MRO.
    result = run(
        f"""
        import socket
        print([name for _, name in socket.if_nameindex()])
        raw = socket.socket.__mro__[1]()
        try:
            raw.connect(("127.0.0.1", {listener.getsockname()[1]}))
        except OSError as error:
            print("refused", error.errno)
        else:
            print("connected")
        """
    )
    assert result.passed, result.stderr
    interfaces, outcome = result.stdout.splitlines()
    assert interfaces == "['lo']"
    assert outcome.startswith("refused")
    assert_no_connection(listener)


@pytest.mark.skipif("pid" not in CAPABILITIES.namespaces, reason="unshare --pid is not permitted")
def test_pid_namespace_kills_escaped_processes():
    # Bypass the guard (a fresh copy of the builtin posix module) to fork a process that leaves
    # the process group; it must still die with the run. It beats on stdout, since with the
    # read-only file system it cannot write anywhere the test could look later.
    result = run(
        """
        import importlib.machinery, importlib.util, os, time
        posix = importlib.util.module_from_spec(
            importlib.machinery.BuiltinImporter.find_spec("posix")
        )
        print(os.getpid(), os.path.dirname(os.getcwd()), flush=True)
        if posix.fork() == 0:
            posix.setsid()
            while True:
                posix.write(1, b"beat\\n")
                time.sleep(0.05)
        time.sleep(60)
        """,
        timeout=1.5,
    )
    assert result.timed_out
    first, *beats = result.stdout.splitlines()
    pid, root = first.split()
    assert pid == "1"  # the program was the namespace's init
    assert beats and set(beats) == {"beat"}  # the escaped process ran ...
    deadline = time.monotonic() + 2.0
    while sandbox_processes(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes(root) == []  # ... and is gone


needs_read_only_root = pytest.mark.skipif(
    not CAPABILITIES.read_only_root,
    reason="sandbox_capabilities().read_only_root is False: unshare --mount (or remounting "
    "read-only in it) does not work here, so only the in-child guard protects the file system",
)

# Tries each write in turn, without stopping, and prints how each ended.
TRY_WRITES = """
import errno, os

def attempt(what, action):
    try:
        action()
    except OSError as error:
        print(what, errno.errorcode.get(error.errno, error.errno))
    else:
        print(what, "done")
"""


@needs_read_only_root
def test_read_only_root_holds_with_the_guard_off(tmp_path):
    marker = tmp_path / "marker.txt"
    marker.write_text("keep me")
    new = tmp_path / "new.txt"
    outside_tmp = Path("/tmp") / f"dllm-gym-sandbox-test-{uuid.uuid4().hex}"
    code = TRY_WRITES + textwrap.dedent(
        f"""
        attempt("write", lambda: open({str(new)!r}, "w").write("created"))
        attempt("remove", lambda: os.remove({str(marker)!r}))
        attempt("overwrite", lambda: open({str(marker)!r}, "w").write("overwritten"))
        attempt("rename", lambda: os.rename({str(marker)!r}, {str(new)!r}))
        attempt("tmp", lambda: open({str(outside_tmp)!r}, "w").write("created"))
        attempt("mkdir", lambda: os.mkdir({str(outside_tmp)!r}))
        """
    )
    try:
        result = run(code, guard=False)
        assert result.passed, result.stderr
        assert result.read_only_root
        assert "sandbox:" not in result.stderr  # the guard really was off
        outcomes = dict(line.split() for line in result.stdout.splitlines())
        assert outcomes == dict.fromkeys(
            ["write", "remove", "overwrite", "rename", "tmp", "mkdir"], "EROFS"
        )
        assert marker.read_text() == "keep me"
        assert sorted(path.name for path in tmp_path.iterdir()) == ["marker.txt"]
        assert not outside_tmp.exists()
    finally:
        if outside_tmp.is_dir():
            outside_tmp.rmdir()
        elif outside_tmp.exists():
            outside_tmp.unlink()


@needs_read_only_root
def test_read_only_root_cannot_be_undone(tmp_path):
    # With the guard off, ctypes can call mount(2) directly: in the child's own namespaces (no
    # capabilities left) and in a new, nested user and mount namespace (full capabilities
    # there, but the kernel locks the read-only flags of the mounts it inherits).
    target = tmp_path / "target.txt"
    target.write_text("original")
    code = TRY_WRITES + textwrap.dedent(
        f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
        MS_REMOUNT, MS_BIND = 32, 4096

        def call(result):
            if result != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))

        def remount_writable():
            call(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND, None))

        def unmount_work():
            call(libc.umount2(os.getcwd().encode(), 2))  # MNT_DETACH

        def write():
            open({str(target)!r}, "w").write("overwritten")

        attempt("remount", remount_writable)
        attempt("umount", unmount_work)
        attempt("write", write)
        attempt("nested", lambda: call(libc.unshare(0x10000000 | 0x00020000)))  # USER | NS
        attempt("nested-remount", remount_writable)
        attempt("nested-write", write)
        """
    )
    result = run(code, guard=False)
    assert result.passed, result.stderr
    outcomes = dict(line.split() for line in result.stdout.splitlines())
    assert outcomes["remount"] == "EPERM"
    assert outcomes["umount"] == "EPERM"
    assert outcomes["write"] == "EROFS"
    assert outcomes["nested-remount"] == "EPERM" or outcomes["nested"] != "done"
    assert outcomes["nested-write"] == "EROFS"
    assert target.read_text() == "original"


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "guard-off"])
def test_its_temp_dir_stays_writable(guard):
    result = run(
        """
        import os, tempfile
        with open("notes.txt", "w") as f:
            f.write("written in the work dir")
        os.makedirs("sub/deeper")
        os.rename("notes.txt", "sub/deeper/notes.txt")
        with open(os.path.join(os.getcwd(), "sub", "deeper", "notes.txt")) as f:
            print(f.read())
        with tempfile.TemporaryFile() as f:
            f.write(b"scratch")
            f.seek(0)
            print(f.read().decode())
        with open(os.devnull, "w") as f:
            f.write("discarded")
        """,
        guard=guard,
    )
    assert result.passed, result.stderr
    assert result.stdout == "written in the work dir\nscratch\n"
    assert result.read_only_root == CAPABILITIES.read_only_root


def test_modules_that_bypass_the_guard_cannot_be_imported():
    for module in ("ctypes", "resource", "sqlite3"):
        result = run(f"import {module}")
        assert not result.passed and "ModuleNotFoundError" in result.stderr


def test_endless_output_is_capped():
    start = time.monotonic()
    result = run("while True:\n    print('spam' * 250)", file_size_mb=1, output_limit=5000)
    assert not result.passed and not result.timed_out
    assert time.monotonic() - start < TIMEOUT
    assert "File too large" in result.stderr
    assert 0 < len(result.stdout) <= 5000 and "spam" in result.stdout


def test_huge_file_write_is_capped():
    result = run(
        """
        import os
        try:
            with open("big.bin", "wb") as f:
                f.write(b"0" * 50_000_000)
        finally:
            print(os.path.getsize("big.bin"))
        """,
        file_size_mb=2,
    )
    assert not result.passed and "File too large" in result.stderr
    assert int(result.stdout) <= 2 * 1024 * 1024


def test_environment_is_minimal(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/nowhere")
    monkeypatch.setenv("DLLM_GYM_SECRET", "hidden")
    result = run(
        """
        import os, sys
        print(sorted(os.environ))
        print(os.environ["HOME"] == os.environ["TMPDIR"] == os.getcwd())
        print(sys.flags.isolated)
        """
    )
    assert result.passed, result.stderr
    names, home_is_cwd, isolated = result.stdout.splitlines()
    assert "PYTHONPATH" not in names and "DLLM_GYM_SECRET" not in names
    assert home_is_cwd == "True" and isolated == "1"


def test_capabilities_describe_the_layers():
    assert set(CAPABILITIES.namespaces) <= {"user", "net", "pid"}
    assert CAPABILITIES.network_isolated == ("net" in CAPABILITIES.namespaces)
    assert {"RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE"} <= set(CAPABILITIES.rlimits)
    assert isinstance(CAPABILITIES.read_only_root, bool)
    if CAPABILITIES.read_only_root:  # it builds on the user and PID namespaces
        assert {"user", "pid"} <= set(CAPABILITIES.namespaces)
    bare = run("pass", namespaces=False)
    assert bare.namespaces == () and not bare.read_only_root


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"code": b"print(1)"}, TypeError, "code"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"memory_mb": 4}, ValueError, "memory_mb"),
        ({"file_size_mb": "10"}, ValueError, "file_size_mb"),
        ({"run_name": "not a name"}, ValueError, "run_name"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, names):
    kwargs = {"code": "pass", **kwargs}
    with pytest.raises(error, match=names):
        run_python(kwargs.pop("code"), **kwargs)
