"""The whole live platform on one machine: what ``touchpoints up`` runs.

In this process: the event store (for the API), the bundled broker (unless
``TOUCHPOINTS_KAFKA`` names a cluster), the live views fed from
``touchpoints.journeys`` by the view feed, and the HTTP API (uvicorn, in a thread).
As supervised child processes, each in its own session so a terminal's Ctrl-C
reaches only this process, which stops them in order: the relay
(``touchpoints relay``) and one Faust worker (``touchpoints worker``). A child that
dies is started again (at-least-once everywhere, so a restart loses nothing).
Children also get SIGKILL if this process dies without stopping them.

The live views save their default documents under ``<data>/views/`` (throttled, and on
stop); a restarted platform serves those at once, marked ``restored`` in ``/healthz``,
and lets the live views take over once the pipeline caught up with the position they
reflect (``Platform.live_views_caught_up``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from application.settings import Settings
from application.view_state import TAKE_UP_TIMEOUT, save_on_stop
from streams.parent_death import die_with_parent

log = logging.getLogger(__name__)

STABLE_SECONDS = 30.0  # a child that ran this long restarts quickly again if it dies
CHILD_STOP_TIMEOUT = 15.0  # seconds a child has to exit after SIGTERM before it is killed
FEED_DRAIN_TIMEOUT = 15.0  # seconds the view feed has, once the worker stopped, to read its last journeys
WORKER_STOP_TIMEOUT = 120.0
RECYCLE_DRAIN_STALL = 60.0  # seconds the view feed may read no journey before a planned broker restart gives up  # the worker saves its journeys as it stops (streams.worker_state)


class ChildProcess:
    """One supervised child: started, restarted with backoff if it dies, stopped with
    SIGTERM (then SIGKILL after ``stop_timeout``)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path, stop_timeout: float = CHILD_STOP_TIMEOUT):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self._log_file: Any = None
        self._restart_at: float | None = None
        self._started_at = 0.0
        self._backoff = 0.5

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file is None:
            self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent(),
        )
        self._started_at = time.monotonic()
        log.info("started %s (pid %d, log %s)", self.name, self.process.pid, self.log_path)

    def check(self) -> None:
        """Restart the child if it died (the supervisor calls this), with a backoff
        that grows while it keeps dying and resets once it ran for a while."""
        if self.process is None:
            return
        now = time.monotonic()
        if self.alive:
            if now - self._started_at > STABLE_SECONDS:
                self._backoff = 0.5
            return
        if self._restart_at is None:
            self.last_exit = self.process.returncode
            log.warning("%s (pid %d) exited with %s: restarting in %.1f s",
                        self.name, self.process.pid, self.last_exit, self._backoff)
            self._restart_at = now + self._backoff
            self._backoff = min(self._backoff * 2, 10.0)
        elif now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            self.start()

    def kill(self) -> None:
        """SIGKILL (fault tests): the supervisor starts it again."""
        if self.alive:
            self.process.kill()
            self.process.wait()

    def stop(self) -> int | None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, self.stop_timeout)
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return process.returncode if process is not None else None

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.alive else "starting" if self.process is None else "down",
            "pid": self.pid,
            "restarts": self.restarts,
            "log": str(self.log_path),
        }


class Platform:
    """Starts and stops every component; ``health_checks()`` feeds ``/healthz``."""

    def __init__(self, settings: Settings, *, python: str = sys.executable):
        self.settings = settings
        self.python = python
        self.run_dir = Path(settings.data) / "run"
        self.store: Any = None
        self.access: Any = None
        self.first_start: list[str] = []  # the admin key made at first start, to print once
        self.broker: Any = None
        self.bootstrap = ""
        self.views: Any = None
        self.feed: Any = None
        self.relay: ChildProcess | None = None
        self.worker: ChildProcess | None = None
        self.server: Any = None
        self.base_url = ""
        self.demo_loaded = 0
        self.handed_over_after: int | None = None  # the worker's saved state was handed over: the relay resumed after it
        self._server_thread: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._kafka_health: tuple[float, dict[str, Any]] | None = None
        self._feed_applied_to_end = threading.Event()
        self._taking_up: threading.Thread | None = None  # the views' saved state being taken up
        self._children_due = threading.Event()  # set once a state was taken up: start the relay and worker
        # the bundled broker's planned restarts (streams.broker_recycle)
        self._broker_starter: Any = None  # the thread that starts the restarted broker: it lives until the stop
        self._recycling = threading.Event()
        self._recycle_check_at = 0.0
        self._inbound_quiet: Any = None
        self._idle_head: int | None = -1  # the store's head when last seen moving, and since when
        self._idle_since = 0.0
        self.broker_recycles: list[dict[str, Any]] = []
        self._broker_memory: dict[str, Any] = {}

    # --- start ----------------------------------------------------------------------------

    def start(self) -> "Platform":
        from application.access import open_access
        from consumers.api.app import create_app
        from consumers.api.server import base_url, bind_socket, make_server
        from consumers.cli.keys import first_start_lines
        from application.demo import load_demo_if_empty
        from application.live_views import LiveViews
        from application.privacy.mode import settle
        from application.journey_spill import views_journeys_folder
        from application.view_documents import documents_path
        from application.view_state import log_holds, state_folder
        from events.factory import open_store
        from events.registry import REGISTRY
        from streams.broker import BundledBroker
        from streams.topics import ensure_topics
        from streams.worker_state import hand_over_to_fresh_broker, views_hold_every_saved_journey
        from streams.view_feed import ViewFeed

        settings = self.settings
        REGISTRY.load_plugins()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            sock = bind_socket(settings.host, settings.port)
            self.store = open_store(settings.store_url)
            self.settings = settings = settle(settings, self.store)  # the log's sealing mode, or refuse to start
            self.access = open_access(settings.data)
            self.first_start = first_start_lines(self.access, settings)
            if settings.kafka:
                self.bootstrap = settings.kafka.removeprefix("kafka://")
            else:
                self.broker = BundledBroker(data_dir=self.run_dir).start()
                self.bootstrap = self.broker.bootstrap
                if settings.broker_memory_budget_mib > 0:
                    from streams.broker_recycle import QuietWatch
                    from streams.parent_death import StartingThread

                    self._broker_starter = StartingThread("broker-starter")
                    self._inbound_quiet = QuietWatch()
            ensure_topics(self.bootstrap, settings.partitions)
            self.views = LiveViews(documents_path=documents_path(settings.data),
                                   journeys_folder=views_journeys_folder(settings),
                                   contributions_on_disk=settings.views_contributions_on_disk,
                                   state_folder=state_folder(settings.data))
            saved = self.views.find_state(holds=log_holds(self.store), feed="kafka")  # what the last clean stop saved
            # a broker that lost the events (the bundled one restarted): the worker's saved journeys spare refolding
            # the log, if the views' state holds them (the journeys topic will hold only the changes over them)
            handed = hand_over_to_fresh_broker(
                settings.data, self.store, self.bootstrap,
                views_hold=lambda state: saved is not None and views_hold_every_saved_journey(saved.feed, state))
            self.handed_over_after = handed.after if handed is not None else None
            self.demo_loaded = load_demo_if_empty(self.store, settings)
            self.relay = self._child("relay", ["relay", "--stats-interval", "30"])
            worker = ["worker", "--stats-file", str(self._worker_stats_path())]
            if self.broker is not None:  # tansu 0.6 implements no DeleteRecords: a request kills its connection
                worker.append("--no-trim")
            self.worker = self._child("worker", worker, stop_timeout=WORKER_STOP_TIMEOUT)
            if saved is None:
                self._start_children()
            elif handed is not None:
                # handed over, the worker has only the events after its state to fold, and its start is
                # mostly waiting (its process, the broker's group join): it starts beside the take-up,
                # the relay (started in ~1 s) after it
                self.worker.start()
            # else the relay and the worker start once the state is in: on two cores their catch-up
            # would take half the CPU the take-up needs (at a million customers 10.9 s instead of ~7)
            # served while the state is taken up, or (none) until the live views caught up with them
            self.views.restore_documents(head=self.store.head_position(), ready=self.live_views_caught_up)
            self.feed = ViewFeed(self.bootstrap, self.views, listeners=[self._note_feed_applied])
            app = create_app(store=self.store, settings=settings, views=self.views,
                             health_checks=self.health_checks(), access=self.access)
            self.server = make_server(app, log_level=settings.log_level)
            self.base_url = base_url(sock)
            self._server_thread = threading.Thread(
                target=self.server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
            )
            self._server_thread.start()
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()
            self._wait_for_api()
            # after the API: restored documents are served without waiting behind the load
            if saved is not None:
                self._taking_up = self.views.take_up_then_feed(
                    saved, self.feed, then=self._children_due.set,
                    # the journeys topic holds only the changes over the worker's handed-over journeys
                    if_not_taken_up=None if handed is None else lambda: self._apply_handed_journeys(handed))
            else:
                self.feed.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _apply_handed_journeys(self, handed: Any) -> None:
        """The views' state could not be taken up after the worker's journeys were handed
        over: give the views those journeys, which the journeys topic does not hold."""
        from streams.worker_state import saved_journey_batches

        started, count = time.monotonic(), 0
        for batch in saved_journey_batches(handed):
            self.views.apply_journeys(batch)
            count += len(batch)
        log.warning("the views' state was not taken up: %d journeys handed over to the worker applied in %.1f s",
                    count, time.monotonic() - started)

    def extra_worker(self, name: str) -> ChildProcess:
        """Another worker process of this platform (not started, not supervised): it joins
        the same consumer groups and shares the partitions, as scaled-out workers do in
        production. Health and readiness follow the supervised worker only."""
        return self._child(name, ["worker", "--stats-file", str(self.run_dir / f"{name}-stats.json"),
                                  *(["--no-trim"] if self.broker is not None else [])])

    def _child(self, name: str, command: list[str], stop_timeout: float = CHILD_STOP_TIMEOUT) -> ChildProcess:
        env = {
            **{name: value for name, value in os.environ.items() if name != "TOUCHPOINTS_ADMIN_KEY"},
            "TOUCHPOINTS_KAFKA": self.bootstrap,
            "TOUCHPOINTS_DATA": str(self.settings.data),
            "TOUCHPOINTS_STORE": self.settings.store_url,
            "TOUCHPOINTS_PARTITIONS": str(self.settings.partitions),
            "TOUCHPOINTS_KAFKA_COMPRESSION": self.settings.kafka_compression,
            "TOUCHPOINTS_LOG_LEVEL": self.settings.log_level,
            "TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK": "1" if self.settings.worker_journeys_on_disk else "0",
            # this platform hands the worker's journeys over when the broker lost the events (streams.worker_state)
            "TOUCHPOINTS_WORKER_SAVES_STATE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        argv = [self.python, "-m", "consumers.cli.main", *command]
        return ChildProcess(name, argv, env=env, log_path=self.run_dir / f"{name}.log", stop_timeout=stop_timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the worker joined both consumer groups and the view feed follows
        the journeys topic (startup takes a few seconds: group joins on the broker)."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the platform was not ready within {timeout:.0f} s: {self.worker_health()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        worker = self.worker_health()
        processor = worker.get("processor") or {}
        return (
            worker.get("status") == "ok"
            and bool(processor.get("assigned"))
            and bool(worker.get("faust_assigned_partitions"))
            and self.feed is not None
            and self.feed.stats()["status"] == "ok"
        )

    def _wait_for_api(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._server_thread is None or not self._server_thread.is_alive():
                raise RuntimeError("the HTTP API did not start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP API did not start within {timeout:.0f} s")
            time.sleep(0.02)

    def _start_children(self) -> None:
        for child in (self.relay, self.worker):
            if child.process is None:
                child.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.25):
            if self._children_due.is_set() and self.relay.process is None:
                self._start_children()  # from this thread, which lives until the stop: see below
            for child in (self.relay, self.worker):
                if child is not None and not self._stopping.is_set():
                    child.check()
            if self._broker_starter is not None and not self._stopping.is_set():
                self._recycle_broker_over_budget()
        # The parent-death signal follows the thread that started a child: a child this thread
        # restarted would get SIGKILL as it ends, so stop them gracefully (SIGTERM) before that.
        self._stop_children()

    def _stop_children(self) -> None:
        for child in (self.worker, self.relay):
            if child is not None:
                child.stop()

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything, the API first and the broker last; safe to call twice."""
        self._stopping.set()
        if self.server is not None and self._server_thread is not None:
            self.server.should_exit = True
            self._server_thread.join(15)
        if self._supervisor is not None:
            self._supervisor.join(5 + WORKER_STOP_TIMEOUT + CHILD_STOP_TIMEOUT)  # it stops the worker, then the relay
        if self._supervisor is None or not self._supervisor.is_alive():
            self._stop_children()  # a no-op for children the supervisor stopped
        if self._taking_up is not None:
            self._taking_up.join(TAKE_UP_TIMEOUT)  # it starts the feed once done
        if self.feed is not None:
            # the worker stopped: what it published last reaches the views before they are saved, so a
            # next start that hands its journeys over need not read them again (streams.worker_state)
            if self.feed.stats()["status"] == "ok":
                self.feed.wait_caught_up(FEED_DRAIN_TIMEOUT)
            self.feed.stop()
        if self.views is not None:
            self.views.close()
            if self.feed is not None and self.store is not None:  # the next start takes up where these stopped
                save_on_stop(self.views, self.feed, self.store)
        if self.broker is not None:
            self.broker.stop()
        if self._broker_starter is not None:
            self._broker_starter.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.access is not None:
            self.access.close()
            self.access = None

    def __enter__(self) -> "Platform":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the bundled broker's planned restarts ---------------------------------------------

    def _recycle_broker_over_budget(self) -> None:
        """From the supervisor, every few seconds: restart the bundled broker on purpose when
        its memory calls for it and nothing holds it back (``streams.broker_recycle``)."""
        from streams.broker_recycle import (
            CHECK_INTERVAL, IDLE_FRACTION, inbound_ends, resident_mib, what_holds_back, why_restart,
        )

        now = time.monotonic()
        if now < self._recycle_check_at:
            return
        self._recycle_check_at = now + CHECK_INTERVAL
        budget = self.settings.broker_memory_budget_mib
        rss = resident_mib(self.broker.pid)
        memory = {"budget_mib": budget, "rss_mib": None if rss is None else round(rss, 1), "waiting_for": None}
        self._broker_memory = memory
        log_idle_for = self._log_idle_for(now)
        if rss is None or rss <= budget * IDLE_FRACTION:  # no restart can be due: nothing more to read
            return
        try:  # watched from here on: a restart that falls due need not wait for the quiet time to start
            quiet = self._inbound_quiet.is_quiet(inbound_ends(self.bootstrap), now)
        except Exception as error:  # the broker is checked again in a few seconds
            quiet, memory["inbound"] = False, f"offsets not read: {type(error).__name__}: {error}"
        reason = why_restart(rss, budget, log_idle_for=log_idle_for,
                             views_at_head=lambda: self.views_health()["status"] == "ok")
        if reason is None:
            return
        last = self.broker_recycles[-1]["ended_at"] if self.broker_recycles else None
        memory["waiting_for"] = what_holds_back(
            since_last=None if last is None else now - last,
            taking_up=self.views.restored_status() is not None or (self._taking_up is not None
                                                                    and self._taking_up.is_alive()),
            running=self.worker.alive and self.relay.alive and self.feed.stats()["status"] == "ok",
            inbound_quiet=quiet)
        if memory["waiting_for"] is None:
            self.recycle_broker(reason=reason)

    def _drain_feed(self) -> bool:
        """Wait for the view feed to read the journeys topic to its end (the worker stopped:
        its lag only falls). In a catch-up the views trail the worker by up to a few hundred
        thousand journeys, read at the views' own pace, which the stopped worker and relay
        no longer share the CPU with. False once it made no progress for a minute."""
        best, progressed_at = None, time.monotonic()
        while not self._stopping.is_set():
            if self.feed.wait_caught_up(1.0):
                return True
            lag = self.feed.lag()
            if lag is not None and (best is None or lag < best):
                best, progressed_at = lag, time.monotonic()
            elif time.monotonic() - progressed_at > RECYCLE_DRAIN_STALL:
                return False
        return False

    def _log_idle_for(self, now: float) -> float:
        """Seconds the store's head has not moved (as seen by these checks)."""
        head = self.store.head_position()
        if head != self._idle_head:
            self._idle_head, self._idle_since = head, now
        return now - self._idle_since

    def recycle_broker(self, *, reason: str) -> dict[str, Any]:
        """Restart the bundled broker empty without losing anything: the worker stops and
        saves its journeys, the relay stops, the feed reads what the worker published last,
        unread inbound records and dead letters are read, the broker restarts, they are put
        back, the worker's journeys are handed over (the relay publishes only the events
        after them), the worker and the relay start again. If the views do not hold every
        saved journey the broker is left as it is. Runs in the supervisor's thread (the
        children it starts again die with it). Returns what it did (also in ``/healthz``).
        Workers started beside the platform's (``extra_worker``) are not stopped: do not
        give a platform that runs them a budget it reaches."""
        from streams.topics import APP_ID
        from streams.broker_recycle import put_back, read_unconsumed, resident_mib
        from streams.topics import ensure_topics
        from streams.worker_state import hand_over_to_fresh_broker, read, state_folder, views_hold_every_saved_journey

        started = time.monotonic()
        record: dict[str, Any] = {"at": time.time(), "reason": reason, "rss_mib_before": resident_mib(self.broker.pid)}
        log.warning("bundled broker: planned restart (%s)", reason)
        self._recycling.set()
        try:
            self.worker.stop()  # it saves its journeys (TOUCHPOINTS_WORKER_SAVES_STATE)
            self.relay.stop()
            record["children_stopped_in"] = round(time.monotonic() - started, 2)
            drained = self._drain_feed()
            record["feed_drained_in"] = round(time.monotonic() - started - record["children_stopped_in"], 2)
            # stopped while the broker restarts: its consumer would create the journeys topic on the new
            # broker with tansu's default partitions before ensure_topics does (seen at a million customers)
            self.feed.stop()
            feed_checkpoint = self.feed.checkpoint()
            saved = read(state_folder(self.settings.data))
            skip = ("the platform is stopping" if self._stopping.is_set()
                    else "the view feed did not read the journeys topic to its end" if not drained
                    else "the worker saved no journeys" if saved is None
                    else "the views do not hold every journey the worker saved"
                    if not views_hold_every_saved_journey(feed_checkpoint, saved) else None)
            if skip is None:
                carried = read_unconsumed(self.bootstrap, inbound_groups=[APP_ID])  # the inbound agent's group
                self._broker_starter.run(self.broker.restart)
                ensure_topics(self.bootstrap, self.settings.partitions)
                record["carried_over"] = put_back(self.bootstrap, carried, compression=self.settings.kafka_compression)
                handed = hand_over_to_fresh_broker(
                    self.settings.data, self.store, self.bootstrap,
                    views_hold=lambda state: views_hold_every_saved_journey(feed_checkpoint, state))
                self.handed_over_after = handed.after if handed is not None else None
                record["relay_resumes_after"] = self.handed_over_after
                record["outcome"] = "restarted" if handed is not None else "restarted; the log is published again"
            else:
                log.warning("bundled broker: not restarted (%s)", skip)
                record["outcome"] = f"not restarted: {skip}"
        except Exception as error:
            log.exception("bundled broker: the planned restart failed")
            record["outcome"] = f"failed: {type(error).__name__}: {error}"
        finally:
            self.feed.start()  # on from where it stopped (a no-op if it runs): it finds the journeys topic recreated
            if not self._stopping.is_set():
                self.worker.start()
                self.relay.start()
            self._recycling.clear()
            record["seconds"] = round(time.monotonic() - started, 2)
            record["ended_at"] = time.monotonic()
            self.broker_recycles.append(record)
        log.warning("bundled broker: %s in %.1f s", record["outcome"], record["seconds"])
        return record

    # --- health ---------------------------------------------------------------------------

    def health_checks(self) -> dict[str, Any]:
        return {
            "kafka": self.kafka_health,
            "relay": self.relay_health,
            "worker": self.worker_health,
            "view_feed": lambda: self.feed.stats(),
            "views": self.views_health,
        }

    def kafka_health(self) -> dict[str, Any]:
        from streams.broker import broker_answers

        now = time.monotonic()
        if self._kafka_health is None or now - self._kafka_health[0] > 2.0:
            answers = broker_answers(self.bootstrap, timeout=1.0)
            self._kafka_health = (now, {
                "status": "ok" if answers else "down",
                "bootstrap": self.bootstrap,
                "bundled": self.broker is not None,
                "pid": self.broker.pid if self.broker is not None else None,
            })
        report = self._kafka_health[1]
        if self._broker_starter is not None:
            recycles = self.broker_recycles
            report = {**report, "memory": self._broker_memory, "restarts_planned": len(recycles),
                      "restarting": self._recycling.is_set(),
                      "last_restart": {k: v for k, v in recycles[-1].items() if k != "ended_at"} if recycles else None}
        return report

    def relay_health(self) -> dict[str, Any]:
        report = self.relay.health() if self.relay is not None else {"status": "down"}
        if (Path(self.settings.data) / "relay.db").exists():
            position = self._relay_checkpoint()
            head = self.store.head_position() if self.store is not None else None
            report.update(checkpoint=position, head=head, caught_up=position == head)
        return report

    def _relay_checkpoint(self) -> int | None:
        """The last log position the broker acknowledged to the relay (None: none yet)."""
        return self._relay_progress().position

    def _relay_progress(self) -> Any:
        """The relay's saved ``Checkpoint`` (an empty one before its first page)."""
        from streams.checkpoint import Checkpoint, SqliteCheckpointStore
        from streams.topics import EVENTS_TOPIC

        path = Path(self.settings.data) / "relay.db"
        if not path.exists():
            return Checkpoint()
        checkpoints = SqliteCheckpointStore(path)
        try:
            return checkpoints.load(EVENTS_TOPIC)
        finally:
            checkpoints.close()

    def _settled_through(self, position: int | None, processor: dict[str, Any]) -> dict[str, Any]:
        """``settled_through`` with the relay's saved checkpoint and the view feed's offsets."""
        feed = self.feed
        return settled_through(position, self._relay_progress(), processor,
                               feed.applied_offsets() if feed is not None else None,
                               feed.lag() if feed is not None else None)

    def views_health(self) -> dict[str, Any]:
        """``starting`` until the worker's journey processor holds every partition of the
        events topic and the view feed has read the journeys topic; then the views'
        position against the store's head (``consumers.api.app.views_health``), ``ok`` only
        when they reached it and nothing is left on the way: the relay's checkpoint at the
        head, every event it acknowledged folded and every journey of them applied
        (``settled_through``), and the documents rendered since (``documents_current``).

        Over Kafka the views' position is the highest one any journey they hold reflects
        (journeys come from several partitions), not a watermark: the relay's checkpoint,
        the processor's folds and the feed's applied offsets vouch for the events before it
        (``_settled_through``; the processor's, from the stats the worker writes every
        second). The lags are reported beside them."""
        from consumers.api.app import views_health

        if self.views.restored_status() is not None:  # the saved documents are served meanwhile
            report = views_health(self.views, self.store)
            worker = self.worker_health()
            processor = worker.get("processor") or {}
            report["live"].update(
                relay_checkpoint=self._relay_checkpoint(), processor_assigned=sorted(processor.get("assigned") or ()),
                processor_lag=processor.get("lag"), view_feed_lag=self.feed.lag() if self.feed is not None else None,
            )
            return report
        if self._recycling.is_set():  # the views keep serving what they hold meanwhile
            report = views_health(self.views, self.store)
            if report["status"] == "ok":
                report["status"] = "catching_up"
            report["waiting_for"] = "the bundled broker's planned restart (kafka in /healthz)"
            return report
        worker = self.worker_health()
        processor = worker.get("processor") or {}
        assigned = sorted(processor.get("assigned") or ())
        partitions = self.settings.partitions
        if worker.get("status") != "ok" or not set(range(partitions)) <= set(assigned):
            return {"status": "starting", "waiting_for": "the journey processor to be assigned every partition",
                    "assigned": assigned, "partitions": partitions}
        feed_lag = self.feed.stats()["lag"] if self.feed is not None else None
        if feed_lag is None:
            return {"status": "starting", "waiting_for": "the view feed to read the journeys topic"}
        report = views_health(self.views, self.store)
        settled = self._settled_through(report["head"], processor)
        # read last: the documents rendered after the feed applied what ``settled`` counted
        current = self.views.documents_current
        report.update((key, value) for key, value in settled.items() if key != "settled")
        report["documents_current"] = current
        if report["status"] == "ok" and not (settled["settled"] and current):
            report["status"] = "catching_up"
        return report

    def _note_feed_applied(self, items: Any) -> None:
        # In the feed's thread, after the batch was applied: its positions are what the views hold.
        if self.feed is not None and self.feed.lag() == 0:
            self._feed_applied_to_end.set()

    def live_views_caught_up(self) -> bool:
        """The live views hold everything up to the restored documents' position: what
        ``views_health`` calls caught up, with that position in place of the head (the
        relay's checkpoint reached it, every partition assigned to the processor and no
        lag in it, the view feed applied a batch that left it at the end of the journeys
        topic and no lag since). ``LiveViews`` adds that its documents reflect it."""
        restored = self.views.restored_status() if self.views is not None else None
        if restored is None or restored["position"] is None:  # documents of an empty log: nothing to reach
            return True
        if not self._feed_applied_to_end.is_set() or self.feed is None or self.feed.lag() != 0:
            return False
        worker = self.worker_health()
        processor = worker.get("processor") or {}
        assigned = set(processor.get("assigned") or ())
        if worker.get("status") != "ok" or not set(range(self.settings.partitions)) <= assigned:
            return False
        return self._settled_through(restored["position"], processor)["settled"]

    def worker_health(self) -> dict[str, Any]:
        report = self.worker.health() if self.worker is not None else {"status": "down"}
        try:
            stats = orjson.loads(self._worker_stats_path().read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return report
        if stats.get("pid") == report.get("pid"):
            report["stats_age_seconds"] = round(time.time() - stats.get("at", 0), 1)
            report["processor"] = stats.get("processor")
            report["inbound"] = stats.get("inbound")
            report["retention"] = stats.get("retention")
            report["faust_assigned_partitions"] = stats.get("faust_assigned_partitions")
            report["collector"] = stats.get("collector")
        return report

    def _worker_stats_path(self) -> Path:
        return self.run_dir / "worker-stats.json"


def settled_through(position: int | None, checkpoint: Any, processor: dict[str, Any],
                    applied_offsets: dict[int, int] | None, feed_lag: int | None) -> dict[str, Any]:
    """Whether the events up to log ``position`` (None: an empty log) are in the views the
    view feed applied, told by watermarks that each move only once what they count is done,
    so worker stats read a second late can only say "not yet":

    * ``relayed``: the relay's ``checkpoint`` (acknowledged by the broker) reached ``position``;
    * ``folded``: on every events partition, the journey processor folded the last event the
      relay had acknowledged there, and the broker acknowledged its journeys
      (``processor``: the worker's stats, ``JourneyProcessor.watermarks``);
    * ``applied``: on every journeys partition, the view feed applied past the last journey
      the processor had acknowledged when those folds were read (``applied_offsets``).

    ``folded`` / ``applied`` are None where a side does not report its watermarks (a
    relay.db or worker of an earlier version): its lag decides then. ``settled`` is the
    verdict, with no partition being rebuilt."""
    relayed = position is None or (checkpoint.position is not None and checkpoint.position >= position)
    folded_positions = _by_partition(processor.get("folded_positions"))
    published = _by_partition(processor.get("published_offsets"))
    if checkpoint.position is None:
        folded = True  # nothing relayed: nothing to fold
    elif not checkpoint.positions or folded_positions is None:
        folded = None
    else:
        folded = all(folded_positions.get(p, -1) >= last for p, last in checkpoint.positions.items())
    if published is None or applied_offsets is None:
        applied = None
    else:
        applied = all(applied_offsets.get(p, 0) > last for p, last in published.items())
    settled = (relayed and not processor.get("rebuilding")
               and (folded if folded is not None else processor.get("lag") == 0)
               and (applied if applied is not None else feed_lag == 0))
    return {"settled": bool(settled), "relay_checkpoint": checkpoint.position, "relayed": relayed,
            "folded": folded, "applied": applied, "processor_lag": processor.get("lag"), "view_feed_lag": feed_lag}


def _by_partition(reported: dict[str, int] | None) -> dict[int, int] | None:
    """A per-partition map as the worker's JSON stats carry it (keys as text)."""
    return None if reported is None else {int(partition): value for partition, value in reported.items()}


def run_platform(settings: Settings) -> int:
    """``touchpoints up``: start, print where everything listens (and, at first start, the
    admin key; always a one-time dashboard login link), run until SIGINT/SIGTERM."""
    from application.allocator import tune_allocator
    from consumers.api.server import tune_for_reads, tune_gc_for_throughput
    from consumers.cli.keys import login_link_line

    tune_allocator()  # before the platform's threads start: see application.allocator
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    platform = Platform(settings)
    try:
        platform.start()
    except Exception as error:
        print(f"touchpoints up: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    # as `touchpoints serve`: the process's start-up is frozen and the views' state settles out of
    # the collector's full passes (here, not in ``start``: tests run platforms inside pytest)
    tune_gc_for_throughput()
    tune_for_reads(settings)
    try:
        if platform.demo_loaded:
            print(f"loaded {platform.demo_loaded} demo events ({settings.demo_customers} customers)", flush=True)
        kind = "bundled broker" if platform.broker is not None else "Kafka"
        print(f"{kind} at {platform.bootstrap}", flush=True)
        for line in platform.first_start:
            print(line, flush=True)
        print(login_link_line(platform.access, platform.base_url), flush=True)
        print(f"touchpoints API listening on {platform.base_url} "
              f"(dashboard: {platform.base_url}/, health: {platform.base_url}/healthz)", flush=True)
        print("Ctrl-C stops everything", flush=True)
        while not stop.wait(0.5):
            if not platform._server_thread.is_alive():
                print("touchpoints up: the HTTP API stopped unexpectedly", file=sys.stderr)
                return 1
    finally:
        platform.stop()
    print("stopped", flush=True)
    return 0
