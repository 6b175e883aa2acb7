"""The README's examples are executable: a renamed flag, route or emitter argument breaks
this test instead of the reader (as kurrentdbclient's tests/test_docs.py does for its docs).

- every ```python block runs against a real ``touchpoints serve`` (subprocess, temp SQLite
  store, no demo data) and the session's real tansu broker; only the addresses in the code
  text are substituted, and each emitted event is then found in the log / on the topic;
- every ``touchpoints <command> ...`` in shell/console blocks and inline code parses with
  the real CLI parser (shell syntax that is not the CLI's -- pipes, redirections, comments --
  is cut off; a synopsis' ``[...]``, ``a|b`` and ``NAME ...`` are expanded);
- every ``GET``/``POST`` route the README names (and every ``curl`` URL) exists in the API's
  OpenAPI schema, with each query parameter it shows.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest

from consumers.api.app import create_app
from consumers.cli.main import build_parser
from application.live_views import LiveViews
from application.settings import Settings
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from streams.emitter import HttpEmitter, KafkaEmitter, identity_key, with_event_id
from streams.topics import INBOUND_TOPIC
from tests.conftest import make_key
from tests.consumers.helpers import SERVE_HEADERS, start_serve, stop, wait_for_url

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

README_API = "http://127.0.0.1:8000"
README_KAFKA = "127.0.0.1:9092"

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# where a shell command stops being arguments to touchpoints: pipes, lists, redirections
SHELL_OPERATOR = re.compile(r"\s(?:\|\|?|&&|;|\d?>>?|<)(?=\s|\S)")
URL_TEXT = r"(/[\w\-./{}?=&%:+,]*)"
ROUTE = re.compile(r"\b(GET|POST) " + URL_TEXT)
CURL_URL = re.compile(re.escape(README_API) + URL_TEXT)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    return [(lang.strip().lower(), body) for lang, body in re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def without_fenced_blocks(text: str) -> str:
    return re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


# ---------------------------------------------------------------- CLI invocations


def cli_invocations(text: str) -> list[str]:
    """Every ``touchpoints <command> ...`` command line the README shows, once each."""
    found: list[str] = []
    for lang, body in fenced_blocks(text):
        if lang not in SHELL_LANGUAGES:
            continue
        for line in body.splitlines():
            line = line.strip()
            if lang == "console":  # only prompts are commands; the rest is output
                if not line.startswith("$ "):
                    continue
                line = line[2:].strip()
            if re.match(r"touchpoints\s+\w", line):
                found.append(line)
    found += re.findall(r"`(touchpoints\s+\w[^`]*)`", without_fenced_blocks(text))
    return list(dict.fromkeys(found))


def argv_variants(command_line: str) -> list[list[str]]:
    """The argument lists a README command line stands for (without ``touchpoints``): shell
    syntax after the command is cut off; a synopsis (``[--opt X]``) is expanded to all its
    options, each ``a|b`` alternative once, a ``NAME ...`` repetition once."""
    line = command_line.split(" #", 1)[0]
    operator = SHELL_OPERATOR.search(line)
    if operator:
        line = line[: operator.start()]
    synopsis = "[" in line
    if synopsis:
        line = line.replace("[", " ").replace("]", " ")
    tokens = shlex.split(line)[1:]
    if synopsis:
        tokens = [token for token in tokens if token != "..."]
    choices = [token.split("|") if synopsis and "|" in token else [token] for token in tokens]
    return [list(argv) for argv in itertools.product(*choices)]


INVOCATIONS = cli_invocations(README)


def test_readme__shows_cli_invocations_to_check():
    commands = {line.split()[1] for line in INVOCATIONS}

    assert {"ingest", "demo", "replay", "verify", "funnel", "attribution"} <= commands


def command_names(parser) -> set[str]:
    subparsers = next(action for action in parser._actions if action.dest == "command")
    return set(subparsers.choices)


@pytest.mark.parametrize("command_line", INVOCATIONS, ids=INVOCATIONS)
def test_readme__cli_invocation_parses_with_the_real_parser(command_line: str):
    parser = build_parser()

    for argv in argv_variants(command_line):
        if len(argv) == 1 and "`" + command_line + "`" in without_fenced_blocks(README):
            # prose naming a command (`touchpoints ingest`), not running it: the command must exist
            assert argv[0] in command_names(parser), f"README names `{command_line}`: no such command"
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            pytest.fail(f"README: `{command_line}` does not parse as {argv} (exit {exit_.code})")

        assert args.command == argv[0]
        assert callable(args.handler)


def test_argv_variants__cuts_shell_syntax_and_expands_a_synopsis():
    assert argv_variants("touchpoints demo --customers 1000 --seed 7 > demo.ndjson") == [
        ["demo", "--customers", "1000", "--seed", "7"]]
    assert argv_variants("touchpoints verify [--views [--api URL]] [--format text|json]") == [
        ["verify", "--views", "--api", "URL", "--format", "text"],
        ["verify", "--views", "--api", "URL", "--format", "json"]]
    assert argv_variants("touchpoints replay [--projection NAME ...] [--quiet]") == [
        ["replay", "--projection", "NAME", "--quiet"]]


# ---------------------------------------------------------------- API routes


def readme_routes(text: str) -> list[tuple[str, str]]:
    """(method, path with query) of every route the README names, once each."""
    routes = [(method, target.rstrip(".,:;)")) for method, target in ROUTE.findall(text)]
    routes += [("GET", target.rstrip(".,:;)")) for target in CURL_URL.findall(text)]
    return list(dict.fromkeys(routes))


def path_pattern(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("readme_api")
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(folder), "TOUCHPOINTS_DEMO": "0"})
    with SQLiteEventStore(folder / "events.db") as store, LiveViews(background=False) as views:
        return create_app(store=store, settings=settings, views=views).openapi()


ROUTES = readme_routes(README)


def test_readme__names_routes_to_check():
    paths = {urlsplit(target).path for _, target in ROUTES}

    assert {"/v1/events", "/v1/attribution", "/v1/customers/{id}/timeline", "/v1/funnel"} <= paths


@pytest.mark.parametrize(("method", "target"), ROUTES, ids=[f"{m} {t}" for m, t in ROUTES])
def test_readme__route_exists_in_the_openapi_schema(openapi: dict[str, Any], method: str, target: str):
    url = urlsplit(target)
    by_pattern = {path_pattern(path): operations for path, operations in openapi["paths"].items()}

    operations = by_pattern.get(path_pattern(url.path))

    assert operations is not None, f"README names {method} {url.path}; the API has {sorted(openapi['paths'])}"
    assert method.lower() in operations, f"{url.path} answers {sorted(operations)}, not {method}"
    known = {p["name"] for p in operations[method.lower()].get("parameters", []) if p["in"] == "query"}
    shown = {name for name, _ in parse_qsl(url.query, keep_blank_values=True)}
    assert shown <= known, f"README's {target}: unknown query parameter(s) {sorted(shown - known)}"


# ---------------------------------------------------------------- python examples


PYTHON_BLOCKS = [body for lang, body in fenced_blocks(README) if lang == "python"]


def test_readme__has_python_examples():
    assert PYTHON_BLOCKS


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``touchpoints serve`` as a user starts it: a subprocess on an empty temp store; its
    address and an ``emit`` key made with ``touchpoints keys create`` (what the examples read
    from ``TOUCHPOINTS_API_KEY``)."""
    folder = tmp_path_factory.mktemp("readme_serve")
    process = start_serve(folder, TOUCHPOINTS_DEMO="0")
    try:
        url = wait_for_url(process, timeout=60)[0]
        yield url, make_key(folder / "data", "emit", name="readme examples")
    finally:
        stop(process)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """Records (not replaces) what each emitter class is asked to emit, with the id it assigned."""
    record: dict[str, list[dict[str, Any]]] = {"http": [], "kafka": []}
    for name, cls in (("http", HttpEmitter), ("kafka", KafkaEmitter)):
        def spy(self, event, _emit=cls.emit, _sent=record[name]):
            event_id = _emit(self, event)
            _sent.append({**with_event_id(event), "event_id": event_id})
            return event_id

        monkeypatch.setattr(cls, "emit", spy)
    return record


def same_event(left: dict[str, Any], right: dict[str, Any]) -> bool:
    return REGISTRY.validate(left) == REGISTRY.validate(right)


def json_or_none(raw: bytes | None) -> Any:
    """Other tests share the topic and may have produced invalid bytes to it on purpose."""
    try:
        return orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None


def opened(document: dict[str, Any]) -> dict[str, Any]:
    """A logged event as it was sent: its sealed personal values (pseudonyms, the default)
    replaced by the values the page lists under ``personal``."""
    personal = document.get("personal", {})
    return {name: personal.get(value, value) if isinstance(value, str) else value
            for name, value in document["event"].items()}


def stored_events(api: str) -> list[dict[str, Any]]:
    events, position = [], 0
    while True:
        page = httpx.get(f"{api}/v1/events", params={"from_position": position, "limit": 1000},
                         headers=SERVE_HEADERS, timeout=10).json()
        events += [opened(document) for document in page["events"]]
        if not page["has_more"]:
            return events
        position = page["next_position"]


@pytest.mark.slow
@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"python-block-{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme__python_example_delivers_its_events(code, served_api, kafka_broker, emitted, read_topic,
                                                    monkeypatch):
    served_api, emit_key = served_api
    monkeypatch.setenv("TOUCHPOINTS_API_KEY", emit_key)
    runnable = code.replace(README_API, served_api).replace(README_KAFKA, kafka_broker.bootstrap)

    exec(compile(runnable, "README.md (python block)", "exec"), {"__name__": "readme_example"})  # noqa: S102 -- running the README is the point

    assert emitted["http"] or emitted["kafka"], "the example emitted nothing"
    if emitted["http"]:
        stored = {event["event_id"]: event for event in stored_events(served_api)}
        for sent in emitted["http"]:
            assert sent["event_id"] in stored, f"not in the log: {sent}"
            assert same_event(stored[sent["event_id"]], sent)
    if emitted["kafka"]:
        wanted = {sent["event_id"]: sent for sent in emitted["kafka"]}

        def by_id(records):
            return {message.get("event_id"): record for record in records
                    if isinstance(message := json_or_none(record.value), dict)}

        records = read_topic(kafka_broker.bootstrap, INBOUND_TOPIC, until=lambda rs: wanted.keys() <= by_id(rs).keys(),
                             timeout=20)
        on_topic = by_id(records)
        for event_id, sent in wanted.items():
            assert event_id in on_topic, f"not on {INBOUND_TOPIC}: {sent}"
            assert on_topic[event_id].key == identity_key(sent)
            assert same_event(orjson.loads(on_topic[event_id].value), sent)
