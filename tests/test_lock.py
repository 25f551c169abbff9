"""``--lock``: the holder named, ``--lock-wait``, stale locks taken over, only this host's pids
judged; with real processes holding the lock."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from batchcfg.lock import Holder, Lock, _process_start

from .conftest import SandboxProcess, cli, valid_manifest

HOLDER = """
import sys
from pathlib import Path
from batchcfg.lock import Lock

with Lock(Path(sys.argv[1]), command="batchcfg apply holder.csv --profile prod"):
    print("held", flush=True)
    sys.stdin.read()  # until the test lets go
"""


@pytest.fixture(autouse=True)
def in_tmp_path(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


@contextmanager
def holding(lock: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds ``lock`` until its stdin is closed (or it is killed)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def let_go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()


def test_a_held_lock_names_its_holder_and_exits_75_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock, manifest = tmp_path / "batchcfg.lock", valid_manifest(tmp_path / "m.csv", ["a"])
    with holding(lock) as holder:
        started = time.monotonic()
        assert cli("validate", manifest, "--lock", lock, "--report", tmp_path / "r.csv") == 75
        assert time.monotonic() - started < 1
        let_go(holder)
        assert holder.wait(timeout=10) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"batchcfg: error: another run holds the lock {lock}: ")
    assert f"pid {holder.pid} on host {socket.gethostname()} (started 20" in err
    assert err.rstrip().endswith("batchcfg apply holder.csv --profile prod")
    assert not (tmp_path / "r.csv").exists()
    assert lock.read_text() == "", "let go: the file names no one"


def test_lock_wait_takes_the_lock_when_the_holder_ends_in_time(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    lock, manifest = tmp_path / "batchcfg.lock", valid_manifest(tmp_path / "m.csv", ["a"])
    with holding(lock) as holder:
        threading.Timer(0.5, let_go, [holder]).start()
        started = time.monotonic()
        assert cli("validate", manifest, "--lock", lock, "--lock-wait", "20", "--report", tmp_path / "r.csv") == 0
        waited = time.monotonic() - started
    assert 0.4 < waited < 5
    err = capsys.readouterr().err
    assert f"waiting up to 20 s for the lock {lock}: pid {holder.pid} on host " in err
    assert "took over" not in err, "the holder let go properly"


@pytest.mark.parametrize("source", ["flag", "environment", "profile"])
def test_lock_wait_exits_75_when_the_lock_is_still_held(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    lock, manifest = tmp_path / "batchcfg.lock", valid_manifest(tmp_path / "m.csv", ["a"])
    argv: list[object] = ["validate", manifest, "--lock", lock, "--report", tmp_path / "r.csv"]
    if source == "flag":
        argv += ["--lock-wait", "0.4"]
    elif source == "environment":
        monkeypatch.setenv("BATCHCFG_LOCK_WAIT", "0.4")
    else:
        (tmp_path / "batchcfg.toml").write_text("[profiles.default]\nlock_wait = 0.4\n")
    with holding(lock) as holder:
        started = time.monotonic()
        assert cli(*argv) == 75
        assert 0.35 < time.monotonic() - started < 3
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"batchcfg: error: another run holds the lock {lock} (waited 0.4 s): pid {holder.pid} ")
    assert not (tmp_path / "r.csv").exists()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    lock, manifest = tmp_path / "batchcfg.lock", valid_manifest(tmp_path / "m.csv", ["a"])
    with holding(lock) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert f'"pid": {holder.pid}' in lock.read_text(), "kill -9: the kernel let the flock go; the file still names it"
    assert cli("validate", manifest, "--lock", lock, "--report", tmp_path / "r.csv") == 0
    err = capsys.readouterr().err
    assert (f"batchcfg: WARNING: took over the lock {lock} from pid {holder.pid}, which is gone (started 20"
            in err) and "batchcfg apply holder.csv --profile prod" in err
    assert lock.read_text() == ""


def test_stale_content_never_keeps_a_run_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock, manifest = tmp_path / "batchcfg.lock", valid_manifest(tmp_path / "m.csv", ["a"])
    elsewhere = Holder(1, "elsewhere.example", "batchcfg apply nfs.csv", "2026-01-01T00:00:00Z")
    lock.write_text(elsewhere.line())  # another host's run, on a shared (NFS) file: its pid means nothing here
    assert cli("validate", manifest, "--lock", lock, "--report", tmp_path / "r1.csv") == 0
    err = capsys.readouterr().err
    assert f"took over the lock {lock}, which that run holds no more: pid 1 on host elsewhere.example" in err
    assert "gone" not in err, "another host's pid is never called gone"
    lock.write_text('{"pid": 12, "ho')  # a holder's line cut short (a full disk)
    assert cli("validate", manifest, "--lock", lock, "--report", tmp_path / "r2.csv") == 0
    assert "took over" not in capsys.readouterr().err


def test_a_file_that_is_not_a_lock_is_refused_and_left_as_it_is(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    before = manifest.read_bytes()
    assert cli("validate", manifest, "--lock", manifest, "--report", tmp_path / "r.csv") == 2
    assert "the file holds something else than a lock" in capsys.readouterr().err
    assert manifest.read_bytes() == before


def test_a_lock_held_by_a_process_the_file_does_not_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An older batchcfg (which wrote nothing) holds the flock, over the line of a run that was killed."""
    lock, manifest = tmp_path / "batchcfg.lock", valid_manifest(tmp_path / "m.csv", ["a"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(Holder(gone.pid, socket.gethostname(), "batchcfg apply old.csv", "2026-01-01T00:00:00Z").line())
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli("validate", manifest, "--lock", lock, "--report", tmp_path / "r.csv") == 75
    err = capsys.readouterr().err
    assert f"the file still names pid {gone.pid} on host" in err and "which is gone (an older batchcfg" in err


def test_only_a_pid_of_this_host_that_is_gone_counts_as_gone() -> None:
    here = socket.gethostname()
    ended = subprocess.Popen(["true"])
    ended.wait()
    me = Holder.me("batchcfg apply m.csv")
    assert me.pid == os.getpid() and me.host == here and not me.gone()
    assert Holder(ended.pid, here, "", "").gone(), "no such process on this host"
    assert not Holder(ended.pid, "elsewhere.example", "", "").gone(), "another host's pid: cannot tell"
    if _process_start(os.getpid()):  # Linux: a pid that runs, but another process than the holder's
        assert Holder(os.getpid(), here, "", "", process="another-boot/1").gone(), "a reused pid"
    assert not Holder(os.getpid(), here, "", "").gone(), "a running pid, and nothing to tell it by"


def test_the_lock_file_names_the_run_without_its_secrets(tmp_path: Path) -> None:
    lock = tmp_path / "batchcfg.lock"
    sandbox = SandboxProcess("--sk", "s3cret-sk", "--token=s3cret-token", "--lock", str(lock))
    try:
        line = lock.read_text()
        assert Holder.parse(line) is not None and f'"pid": {sandbox.process.pid}' in line
        assert "s3cret" not in line and "--sk '***' '--token=***'" in line
    finally:
        sandbox.close()
    assert lock.read_text() == ""


def test_lock_wait_needs_a_lock_and_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    assert cli("validate", manifest, "--lock-wait", "5") == 2
    assert "--lock-wait: only with --lock PATH" in capsys.readouterr().err
    assert cli("validate", manifest, "--lock", tmp_path / "l", "--lock-wait", "90000") == 2
    assert "argument --lock-wait: '90000' must be at most 86,400" in capsys.readouterr().err
    monkeypatch.setenv("BATCHCFG_LOCK_WAIT", "soon")
    assert cli("validate", manifest, "--lock", tmp_path / "l") == 2
    assert "BATCHCFG_LOCK_WAIT: must be a number" in capsys.readouterr().err


def test_a_lock_is_let_go_however_the_block_ends(tmp_path: Path) -> None:
    lock = tmp_path / "batchcfg.lock"
    with pytest.raises(RuntimeError), Lock(lock, command="batchcfg apply m.csv"):
        raise RuntimeError("the run failed")
    with Lock(lock, command="batchcfg apply m.csv") as again:
        assert repr(again).startswith(f"Lock({str(lock)!r}") and "held=True" in repr(again)
