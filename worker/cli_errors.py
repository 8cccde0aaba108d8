"""How the command line reports a mistake: one or two lines naming the setting or file, no traceback.

An operator who mistypes a setting, points at a missing folder or forgot `db upgrade` needs
to read what is wrong and where, not a 70-line traceback with the useful line last. Every
`ecg-worklist` command runs inside `WorklistGroup.invoke`, which turns the exceptions such
mistakes raise into a short message and exit status 1:

    ECGWL_HL7_DESTINATIONS: item 1: unknown key 'hots' (the keys are name, host, port, ...)
    ECGWL_REVIEW_CHANGE_THRESHOLDS: expected JSON (an object or a list), got 'hr_bpm=5'
    the database has no schema yet: run `ecg-worklist db upgrade` first

`--debug` (or ECGWL_DEBUG=1) lets the exception through with its traceback. Setting values
are never echoed for secret settings (the database URL, keys, passwords).

`require_schema` is what every command that reads or writes the tables calls first;
`needs_readers` marks the commands that read ECG files, so that on a review or deliver host
(which installs no reader) they stop with the extra to install instead of a traceback:

    ecg-worklist watch needs the readers: pip install 'ecg-worklist[watch]'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from ingest.host import READER_LIBRARIES, READERS_EXTRA, missing_reader_library, readers_hint

F = TypeVar("F", bound=Callable[..., Any])

# Settings whose value must never be printed, even in an error message.
_SECRET_WORDS = ("url", "key", "password", "secret", "token")


class UserFacingError(click.ClickException):
    """A mistake the operator can fix, already worded for them (click prints `Error: ...`, exit 1)."""


class WorklistGroup(click.Group):
    """The root command group: its `--debug` option, and mistakes turned into short messages."""

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 - whatever the command returns
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug_requested(ctx):
                raise
            raise UserFacingError(describe(exc)) from None


def debug_requested(ctx: click.Context | None = None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get("ECGWL_DEBUG", "").strip().lower() in ("1", "true", "yes")


def describe(exc: BaseException) -> str:
    """One or two lines for an exception an operator's mistake can raise."""
    for kind, wording in _WORDINGS:
        if _is(exc, kind):
            text = wording(exc)
            if text:
                return text
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first} (run with --debug for the traceback)"


# ---------------------------------------------------------------- settings


def env_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """The environment variable of a settings error location: ('input_limits', 'max_pdf_pages')."""
    names = [str(part) for part in loc if isinstance(part, str)]
    return "ECGWL_" + "__".join(names).upper() if names else "ECGWL_*"


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def _validation_error(exc: Any) -> str:  # noqa: ANN401 - pydantic.ValidationError
    lines = []
    for error in exc.errors(include_url=False)[:3]:
        loc = tuple(error.get("loc", ()))
        name = env_name(loc)
        where = "".join(f" item {part + 1}:" for part in loc if isinstance(part, int))
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            allowed = _allowed_keys(exc.title, loc)
            message = f"unknown key {str(loc[-1])!r}" + (f" (the keys are {', '.join(allowed)})" if allowed else "")
            name = env_name(loc[:-1])
        elif error.get("type") == "missing" and len(loc) > 1:
            name = env_name(loc[:-1])
            message = f"key {str(loc[-1])!r} is required"
        elif not _is_secret(name) and "input" in error and not isinstance(error["input"], dict | list):
            message += f" (got {str(error['input'])[:60]!r})"
        lines.append(f"{name}:{where} {message}")
    more = len(exc.errors()) - len(lines)
    if more > 0:
        lines.append(f"... and {more} more problem(s) in the settings")
    return "\n".join(lines)


def _allowed_keys(model_title: str, loc: tuple[Any, ...]) -> list[str]:
    """The keys an object setting accepts, for the 'unknown key' message."""
    from worker.settings import Settings

    if model_title != Settings.__name__ or not loc or not isinstance(loc[0], str):
        return []
    field = Settings.model_fields.get(loc[0])
    if field is None:
        return []
    from typing import get_args

    for kind in (field.annotation, *get_args(field.annotation)):
        fields = getattr(kind, "model_fields", None)
        if fields:
            return list(fields)
    return []


_FIELD_IN_SETTINGS_ERROR = re.compile(r'field "([A-Za-z0-9_]+)"')


def _settings_error(exc: Any) -> str:  # noqa: ANN401 - pydantic_settings.SettingsError
    """pydantic-settings could not decode a value: for a list or object setting, not JSON."""
    match = _FIELD_IN_SETTINGS_ERROR.search(str(exc))
    if not match:
        return f"a setting could not be read: {_first_line(exc)}"
    field = match.group(1)
    name = env_name((field,))
    value = os.environ.get(name, "")
    shown = "" if _is_secret(name) or not value else f", got {value[:60]!r}"
    return (f"{name}: expected JSON (a list or an object, e.g. {_json_example(field)}){shown}; "
            "deploy/ecg-worklist.env.example shows each setting's form")


def _json_example(field: str) -> str:
    examples = {
        "hl7_destinations": '[{"name": "his", "host": "10.0.0.5", "port": 2575}]',
        "inbox_dirs": '["/srv/ecg-inbox"]',
        "review_critical_labels": '["STEMI", "VT"]',
        "review_change_thresholds": '{"qtc_ms": 40}',
    }
    return examples.get(field, '["a", "b"] or {"key": 1}')


# ---------------------------------------------------------------- database, files, services


def _database_error(exc: Any) -> str | None:  # noqa: ANN401 - sqlalchemy.exc.DBAPIError
    text = str(getattr(exc, "orig", exc) or exc).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return NO_SCHEMA
    if "unable to open database file" in text:
        return ("cannot open the SQLite database file: its folder is missing or not writable "
                "(ECGWL_DATA_DIR, or ECGWL_DATABASE_URL); `ecg-worklist db upgrade` makes it")
    if "connection" in text or "could not translate host" in text or "password authentication" in text:
        return f"cannot connect to the database named by ECGWL_DATABASE_URL: {_first_line(getattr(exc, 'orig', exc))}"
    return None


def _os_error(exc: Any) -> str | None:  # noqa: ANN401 - OSError
    filename = getattr(exc, "filename", None)
    reason = getattr(exc, "strerror", None) or _first_line(exc)
    if filename is None:
        return None
    return f"{filename}: {reason}"


# Which extra brings a package a role may lack (pyproject.toml's optional dependencies).
_EXTRA_OF = {"torch": "model", "transformers": "model", "safetensors": "model", "tokenizers": "model",
             "accelerate": "train", "sklearn": "train", "sacrebleu": "train", "vllm": "vllm",
             "celery": READERS_EXTRA, "kombu": READERS_EXTRA,
             **{name: READERS_EXTRA for name in READER_LIBRARIES}}


def _missing_module(exc: Any) -> str | None:  # noqa: ANN401 - ModuleNotFoundError
    """The backstop for a command not marked `needs_readers` that still reached a missing library."""
    top = (getattr(exc, "name", None) or "").split(".")[0]
    extra = _EXTRA_OF.get(top)
    if extra is None:
        return None
    hosts = "a review or deliver host" if extra == READERS_EXTRA else "a review, deliver or watch host"
    return (f"this host has no {top}: this command needs the [{extra}] extra "
            f"(pip install 'ecg-worklist[{extra}]'); {hosts} does not install it")


def _redis_error(exc: Any) -> str:  # noqa: ANN401 - redis.exceptions.ConnectionError
    return f"cannot reach Redis at ECGWL_REDIS_URL: {_first_line(exc)}"


def _is(exc: BaseException, dotted: str) -> bool:
    """isinstance by the class's dotted name: no import of a library a role may not have."""
    return any(f"{kind.__module__}.{kind.__qualname__}" == dotted for kind in type(exc).__mro__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


_WORDINGS: list[tuple[str, Any]] = [
    ("pydantic_core._pydantic_core.ValidationError", _validation_error),
    ("pydantic_settings.exceptions.SettingsError", _settings_error),
    ("sqlalchemy.exc.DBAPIError", _database_error),
    ("redis.exceptions.ConnectionError", _redis_error),
    ("builtins.ModuleNotFoundError", _missing_module),
    ("builtins.OSError", _os_error),
]

NO_SCHEMA = "the database has no schema yet: run `ecg-worklist db upgrade` first"


# ---------------------------------------------------------------- the readers


def _command_name(ctx: click.Context | None) -> str:
    """`ecg-worklist watch`, `ecg-worklist train`: the words typed, whatever the program was called."""
    words = []
    while ctx is not None and ctx.parent is not None:
        words.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["ecg-worklist", *reversed(words)])


def require_readers(extra: str = READERS_EXTRA) -> None:
    """Stop with one line when this host lacks the reader libraries (a review or deliver host)."""
    if missing_reader_library() is not None:
        raise UserFacingError(readers_hint(_command_name(click.get_current_context(silent=True)), extra))


def needs_readers(extra: str = READERS_EXTRA) -> Callable[[F], F]:
    """Mark a command that reads ECG files: on a host without the readers it names `extra` and stops
    before any work (a watcher that started would take every file for an unreadable one)."""
    def mark(command: F) -> F:
        @wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - whatever the command returns
            require_readers(extra)
            return command(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return mark


# ---------------------------------------------------------------- the schema


def require_schema(url: str) -> None:
    """Stop with one line unless the database at `url` is at the newest migration.

    An embedded SQLite file that does not exist yet is not created here (connecting would
    create an empty one): `db upgrade` makes it.
    """
    from alembic.script import ScriptDirectory

    from reports import store

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserFacingError(f"no database at {url.removeprefix('sqlite:///')} (ECGWL_DATA_DIR): "
                              "run `ecg-worklist db upgrade` first")
    current = store.current_revision(url)
    newest = ScriptDirectory.from_config(store.alembic_config(url)).get_current_head()
    if current is None:
        raise UserFacingError(NO_SCHEMA)
    if current != newest:
        raise UserFacingError(f"the database schema is at {current}, this version needs {newest}: "
                              "run `ecg-worklist db upgrade`")
