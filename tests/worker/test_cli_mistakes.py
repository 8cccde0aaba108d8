"""Every documented command, run as the operator types it, with the usual mistakes: no traceback.

Each case is a real `ecg-worklist` process (the installed entry point), so what is checked is
what a terminal shows: exit status, and stderr naming the setting or file and what is wrong
in a line or two. The mistakes are the ones an IT team makes on day one: commands before
`db upgrade`, a setting that is not JSON or has a misspelt key, a path that does not exist,
a user name that is not there. `--debug` still shows the traceback for a bug report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from worker.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "demo-dicom.dcm"
ADDRESSED = json.dumps([{"name": "his", "host": "127.0.0.1", "port": 9}])


def _ecgwl() -> list[str]:
    found = shutil.which("ecg-worklist", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-c", "from worker.cli import main; main()"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """An environment with nothing of ours set, its state directory and cwd inside tmp_path."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ECGWL_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["HOME"] = str(tmp_path / "home")
    env["ECGWL_NEW_USER_PASSWORD"] = "a long enough secret"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    return env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _run(env: dict[str, str | None], cwd: Path, *args: str, real: bool = False, **extra: str) -> Ran:
    """`ecg-worklist ARGS` in `cwd`: in this process through click's runner (the same entry
    point, much faster), or with `real=True` as its own process from the installed script."""
    env = {**env, **extra}
    if real:
        full = {k: v for k, v in os.environ.items() if k not in env} | {k: v for k, v in env.items() if v is not None}
        done = subprocess.run([*_ecgwl(), *args], env=full, cwd=cwd, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
        return Ran(done.returncode, done.stdout, done.stderr)
    here = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env=env, input="")
    finally:
        os.chdir(here)
    # Only a deliberate exit may end a command: anything else would be a traceback at a terminal.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        "".join(traceback.format_exception(result.exception)))
    return Ran(result.exit_code, result.stdout, result.stderr)


def _refused(result: Ran, *words: str) -> str:
    """Exit 1 or 2, no traceback, a short message that contains every word."""
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    # click's own usage errors add its two hint lines ("Usage: ...", "Try ... --help"): not counted.
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith(("Usage: ", "Try '"))]
    message = "\n".join(lines)
    assert 1 <= len(lines) <= 2, result.stderr
    for word in words:
        assert word in message, (word, message)
    return message


def test_commands_before_db_upgrade_say_so(home: dict[str, str | None], tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    archive = tmp_path / "archive"
    archive.mkdir()
    key = {"ECGWL_AUDIT_CHECKPOINT_KEY": "k" * 40}
    broker = {"ECGWL_REDIS_URL": "redis://127.0.0.1:1/0"}
    for args, extra in [
        (["batch", str(archive)], {"real": True}),
        (["users", "list"], {}),
        (["users", "add", "drrossi", "--role", "cardiologist"], {}),
        (["users", "unlock", "drrossi"], {}),
        (["users", "disable", "drrossi"], {}),
        (["audit", "verify"], {}),
        (["audit", "checkpoint"], key),
        (["deliver", "--once"], {"ECGWL_HL7_DESTINATIONS": ADDRESSED}),
        (["review", "serve", "--port", "1"], {}),
        (["watch"], {}),
        (["reconcile"], {}),
        (["check"], {}),
        (["requeue", "--state", "failed"], {}),
        (["worker", "--queues", "prepare"], broker | {"real": True}),
        (["metrics", "serve", "--port", "1"], {}),
    ]:
        _refused(_run(home, cwd, *args, **extra), "db upgrade")
    # Nothing was made by asking: the state directory has no database file yet.
    assert not (tmp_path / "state" / "ecg-worklist" / "ecg-worklist.sqlite3").exists()
    _refused(_run(home, cwd, "health"), "db upgrade")


def test_one_data_folder_whatever_the_directory(home: dict[str, str | None], tmp_path: Path) -> None:
    first, second = tmp_path / "elsewhere", tmp_path / "home"
    second.mkdir()
    upgraded = _run(home, first, "db", "upgrade", real=True)
    assert upgraded.returncode == 0, upgraded.stderr
    database = tmp_path / "state" / "ecg-worklist" / "ecg-worklist.sqlite3"
    assert database.is_file()
    assert _run(home, second, "users", "add", "drrossi", "--role", "cardiologist").returncode == 0
    listed = _run(home, first, "users", "list", real=True)
    assert listed.returncode == 0 and "drrossi\tcardiologist" in listed.stdout
    # ECGWL_DATA_DIR wins, and a relative value means the directory it was given in.
    other = _run(home, second, "db", "upgrade", ECGWL_DATA_DIR="site-data")
    assert other.returncode == 0 and (second / "site-data" / "ecg-worklist.sqlite3").is_file()


def test_settings_mistakes_name_the_setting(home: dict[str, str | None], tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    not_json = _refused(_run(home, cwd, "users", "list", real=True, ECGWL_HL7_DESTINATIONS="his,lab"),
                        "ECGWL_HL7_DESTINATIONS", "expected JSON")
    assert "his,lab" in not_json
    _refused(_run(home, cwd, "deliver", "--once",
                  ECGWL_HL7_DESTINATIONS='[{"name": "his", "hots": "10.0.0.5", "port": 2575}]'),
             "ECGWL_HL7_DESTINATIONS", "unknown key 'hots'", "host")
    _refused(_run(home, cwd, "deliver", "--once", ECGWL_HL7_DESTINATIONS='[{"name": "his", "port": 99999}]'),
             "ECGWL_HL7_DESTINATIONS", "65535")
    _refused(_run(home, cwd, "watch", ECGWL_INBOX_DIRS="/srv/ecg-inbox"), "ECGWL_INBOX_DIRS", "expected JSON")
    _refused(_run(home, cwd, "review", "serve", ECGWL_REVIEW_CHANGE_THRESHOLDS="qtc_ms=40"),
             "ECGWL_REVIEW_CHANGE_THRESHOLDS", "expected JSON")
    _refused(_run(home, cwd, "batch", str(cwd), ECGWL_POLL_SECONDS="fast"), "ECGWL_POLL_SECONDS", "fast")
    _refused(_run(home, cwd, "batch", str(cwd), ECGWL_INPUT_LIMITS__MAX_PDF_PAGES="many"),
             "ECGWL_INPUT_LIMITS__MAX_PDF_PAGES")
    # A secret is never echoed back, even when it is what is wrong.
    short_key = _refused(_run(home, cwd, "audit", "checkpoint", ECGWL_AUDIT_CHECKPOINT_KEY="hunter2"),
                         "ECGWL_AUDIT_CHECKPOINT_KEY")
    assert "hunter2" not in short_key
    unreachable = _refused(_run(home, cwd, "db", "upgrade",
                                ECGWL_DATABASE_URL="postgresql+psycopg://ecg:pw@127.0.0.1:1/ecg"),
                           "ECGWL_DATABASE_URL")
    assert "pw@" not in unreachable
    # --debug shows the traceback for a bug report.
    debug = _run(home, cwd, "--debug", "users", "list", real=True, ECGWL_HL7_DESTINATIONS="his,lab")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_path_mistakes_name_the_file(home: dict[str, str | None], tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    _refused(_run(home, cwd, "render", str(SAMPLE), "-o", "/missing/x.png", real=True), "/missing/x.png",
             "does not exist")
    _refused(_run(home, cwd, "inspect", str(tmp_path / "nothing.dcm")), "nothing.dcm")
    _refused(_run(home, cwd, "read", str(tmp_path / "nothing.dcm")), "nothing.dcm")
    _refused(_run(home, cwd, "batch", str(tmp_path / "no-archive")), "no-archive")
    (tmp_path / "a-file").write_text("not a folder")
    _refused(_run(home, cwd, "db", "upgrade", ECGWL_DATA_DIR=str(tmp_path / "a-file")), "a-file")
    # An hour of training must not end on an output folder it cannot write: refused before it starts.
    _refused(_run(home, cwd, "train", "demo", "--out", "/proc/no-demo-here"), "/proc/no-demo-here",
             "cannot write")
    _refused(_run(home, cwd, "train", "demo", "--out", str(tmp_path / "a-file")), "a-file", "is a file")
    rendered = _run(home, cwd, "render", str(SAMPLE), "-o", "out.png")
    assert rendered.returncode == 0 and (cwd / "out.png").is_file()


def test_account_mistakes(home: dict[str, str | None], tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    assert _run(home, cwd, "db", "upgrade").returncode == 0
    for args in (["users", "unlock", "nobody"], ["users", "disable", "nobody"]):
        _refused(_run(home, cwd, *args), "no user 'nobody'")
    assert _run(home, cwd, "users", "add", "drrossi", "--role", "cardiologist").returncode == 0
    # A taken name is refused before any password is asked for (no password in the environment,
    # nothing on stdin: a prompt would end in "Aborted!").
    no_password = home | {"ECGWL_NEW_USER_PASSWORD": None}
    _refused(_run(no_password, cwd, "users", "add", "DrRossi", "--role", "viewer", real=True), "exists already")
    _refused(_run(no_password, cwd, "users", "add", "x", "--role", "viewer"), "2-64 characters")
    _refused(_run(home, cwd, "users", "add", "eve", "--role", "root"), "--role")
    unlocked = _run(home, cwd, "users", "unlock", "drrossi")
    assert unlocked.returncode == 0 and "unlocked drrossi" in unlocked.stdout


def test_a_reader_command_on_a_review_host_names_the_extra_and_the_hosts_own_commands_work(
        home: dict[str, str | None], tmp_path: Path) -> None:
    """A host that installed only the base package (review, deliver): the reader libraries are absent."""
    from tests.without_readers import run_without_readers

    env = home | {"ECGWL_DATA_DIR": str(tmp_path / "data"), "ECGWL_HL7_DESTINATIONS": ADDRESSED}
    cli = "import sys; from worker.cli import main; main(sys.argv[1:], prog_name='ecg-worklist')"

    def ecgwl(*args: str) -> subprocess.CompletedProcess[str]:
        return run_without_readers(cli, *args, env=env)

    for args, extra in [(["watch"], "watch"), (["batch", str(tmp_path)], "watch"), (["demo"], "watch"),
                        (["worker", "--queues", "prepare"], "cpu-worker"), (["inspect", str(SAMPLE)], "watch"),
                        (["check", "--repair"], "watch"), (["train", "synth", str(tmp_path / "t")], "train")]:
        done = ecgwl(*args)
        assert done.returncode == 1 and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.strip() == (f"Error: ecg-worklist {args[0]} needs the readers: "
                                       f"pip install 'ecg-worklist[{extra}]'"), args
    # What such a host is for runs without them.
    for args in (["--help"], ["watch", "--help"], ["review", "serve", "--help"], ["deliver", "--help"],
                 ["metrics", "serve", "--help"], ["db", "upgrade"], ["users", "add", "drrossi", "--role", "cardiologist"],
                 ["users", "list"], ["audit", "verify"], ["check"], ["deliver", "--once"]):
        done = ecgwl(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "drrossi" in ecgwl("users", "list").stdout
