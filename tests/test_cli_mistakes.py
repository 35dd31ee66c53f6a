"""Likely mistakes with the documented commands, each one line and nothing started:
`attach --record` into a directory that does not exist (was a FileNotFoundError
traceback after attaching), `attach --pid A --port B` where B is another server's or
nobody's (was accepted: the listener's figures were the other server's beside A's
workers), `diff` of a recording and itself (said, its "no difference" proves nothing)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from commands import main as cli
from realservers import RealServer, free_port, real_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.timeout(60)


def test_attach_record_into_a_missing_directory_is_one_line_before_attaching(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "no" / "r.jsonl"
    assert cli.main(["attach", "--pid", str(os.getpid()), "--once", "--record", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"serverscope attach: cannot write --record {bad}: no such directory: {bad.parent}\n"
    )


def test_attach_pid_and_a_port_it_does_not_listen_on_names_the_ports_owner(
    real_server: Callable[..., RealServer],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = real_server("http.server"), real_server("http.server")
    assert cli.main(["attach", "--pid", str(a.root), "--port", str(b.port), "--once"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"serverscope attach: pid {a.root} does not listen on TCP port {b.port} (it listens "
        f"on {a.port}); pid {b.root} does: give --port alone, or --pid {b.root}\n"
    )
    nobody = free_port()
    assert cli.main(["attach", "--pid", str(a.root), "--port", str(nobody), "--once"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"serverscope attach: nothing listens on TCP port {nobody} "
        f"(pid {a.root}: it listens on {a.port})\n"
    )


def test_diff_of_a_recording_and_itself_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import synthetic
    from values.recording import RecordingWriter

    rec = tmp_path / "a.jsonl"
    with RecordingWriter(str(rec), meta={}) as w:
        for s in synthetic.series(24):
            w.write(s)
    assert cli.main(["diff", str(rec), str(rec)]) == 0
    err = capsys.readouterr().err
    assert err == f"serverscope diff: {rec} and {rec} are the same recording\n"


def test_load_at_a_port_that_is_not_http_fails_its_requests_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A banner that cannot begin an HTTP head (SSH's): each request fails at once as a
    bad response. Seen before: `Errors: none`, every request `still waiting` (for a blank
    line that never comes) until the run was cut."""
    srv = socket.create_server(("127.0.0.1", 0), backlog=128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def banner() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            held.append(c)

    t = threading.Thread(target=banner, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/"
        assert cli.main(["load", url, "--duration", "1", "--clients", "2"]) == 1
    finally:
        stop.set()
        t.join(5)
        srv.close()
        for c in held:
            c.close()
    out, err = capsys.readouterr()
    assert "Errors: bad_response" in out, out
    assert err.endswith(f"{url[7:-1]} does not answer HTTP/1.x\n"), err


def test_web_on_a_busy_port_is_one_line_without_saying_it_serves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seen before: textual-serve's banner `Serving ... on http://127.0.0.1:P`, `Press
    Ctrl+C to quit`, then the error line."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert cli.main(["web", "--web-port", str(port)]) == 1
    out, err = capsys.readouterr()
    assert "Serving" not in out and "Ctrl+C" not in out, out
    assert err == (
        f"serverscope web: cannot serve on 127.0.0.1:{port}: Address already in use "
        "(pick another --web-port)\n"
    )


def test_attach_to_a_process_that_listens_on_no_port_says_so_and_claims_no_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seen before: `sleep` shown as a worker `waiting` (for a connection it cannot get),
    nothing said. Its CPU and states are still shown; its state is unknown."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        argv = ["attach", "--pid", str(proc.pid), "--once", "--json", "--estimate-accepts"]
        assert cli.main(argv) == 0
    finally:
        proc.kill()
        proc.wait()
    out, err = capsys.readouterr()
    assert (
        err == f"serverscope attach: pid {proc.pid} (sleep) listens on no TCP port: not a server?\n"
    )
    workers = json.loads(out)["workers"]
    assert [(w["pid"], w["state"]) for w in workers] == [(proc.pid, "unknown")]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--port", "99999"], "argument --port: must be a TCP port (1-65535), got 99999"),
        (["--port", "0"], "argument --port: must be a TCP port (1-65535), got 0"),
        (["--pid", "-5"], "argument --pid: must be a process id (1 or more), got -5"),
        (["--pid", "0"], "argument --pid: must be a process id (1 or more), got 0"),
    ],
)
def test_attach_a_port_or_pid_out_of_range_is_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Were tracebacks (sock_diag's ValueError 'not a TCP port: 99999', psutil's 'pid must
    be a positive integer') after attaching had begun; `--pid 0` read as 'no process'."""
    with pytest.raises(SystemExit) as ended:  # argparse's usage error
        cli.main(["attach", *argv, "--once"])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err == f"serverscope attach: {said} (see serverscope attach --help)\n"


def test_a_status_url_off_loopback_is_refused_without_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every request stays on loopback unless the user allows another host, as `load` and
    `fleet` have it: `--status-url http://10.0.0.1/...` was asked (seen: a 404 from
    whatever answered there). Refused in one line before anything is read or started."""
    argv = ["attach", "--pid", str(os.getpid()), "--once"]
    assert cli.main([*argv, "--status-url", "http://10.0.0.1/server-status"]) == 2
    assert capsys.readouterr().err == (
        "serverscope attach: --status-url: refusing to ask '10.0.0.1': it is not on loopback "
        "(127.0.0.0/8, ::1, localhost); pass --allow-remote if you own that server\n"
    )
    assert cli.main([*argv, "--status-url", "http://status.example/server-status"]) == 2
    assert "refusing to ask 'status.example'" in capsys.readouterr().err
