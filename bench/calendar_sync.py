"""Google Calendar sync throughput and memory: an incremental sync of 5,000 changed events
and a full resync of 20,000, against the sandbox Google.

    .venv/bin/python bench/calendar_sync.py [--full 20000] [--changed 5000]
                                            [--database-url postgresql+psycopg://…/server_db]

The hub's sync (``hub.calendar.flows.sync_resource``: pages from Google, one
transaction per page writing busy blocks, the sync token at the end) runs in this
process against the sandbox served from a thread. The baseline, measured in the same
run, is the connector alone iterating the same changes (``iter_changes``) without the
hub's writes: the ratio says what the hub's bookkeeping costs on top of fetching and
parsing Google's pages. Each case is timed without tracing, then run again under
tracemalloc for its peak (which includes the sandbox rendering pages, in both).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from bench.common import fresh_postgres


def build(database_url: str) -> tuple[Any, Any, Any]:
    """A migrated hub runtime in sandbox mode, the sandbox Google served from a thread."""
    from connectors.sandbox.app import create_sandbox_app
    from connectors.sandbox.server import ThreadedServer
    from hub.migrate import upgrade
    from hub.runtime import build_runtime
    from hub.settings import Settings, new_master_key_entry

    upgrade(database_url)
    sandbox_app = create_sandbox_app(hub_url="http://127.0.0.1:9")
    server = ThreadedServer(sandbox_app).start()
    settings = Settings(env="development", database_url=database_url, master_keys=new_master_key_entry(),
                        var_dir=Path(tempfile.mkdtemp(prefix="hub-bench-cal-")), public_url="http://127.0.0.1:9",
                        sandbox=True, sandbox_url=server.url, embedded_worker=False, relay_in_process=False,
                        log_level="WARNING")
    return build_runtime(settings), server, sandbox_app.state.google


def connected_resource(runtime: Any, google: Any) -> tuple[Any, str]:
    """A tenant connected through the real flow, one resource mapped to a fresh calendar."""
    from hub.calendar import flows, service
    from hub.calendar.schemas import CalendarMappingWrite
    from hub.db import transaction
    from tenants import service as tenants
    from tenants.schemas import TenantCreate

    account = "bench@clinic.example"
    calendar_id = google.seed_account(account, calendars=["Agenda"])[1]
    with transaction(runtime.session_factory) as session:
        tenant = tenants.create_tenant(session=session, vault=runtime.vault,
                                       tenant_in=TenantCreate(slug="bench", name="Bench"))
        tenant_id = tenant.id
        start, _ = flows.start_connect(runtime=runtime, session=session, tenant_id=tenant_id)
    from urllib.parse import parse_qs, urlsplit

    with transaction(runtime.session_factory) as session:  # the browser opens the start link
        binding = flows.open_connect_flow(runtime=runtime, session=session,
                                          flow=parse_qs(urlsplit(start).query)["flow"][0])
    redirect = google.approve(binding.authorization_url, account=account)
    query = {k: v[-1] for k, v in parse_qs(urlsplit(redirect).query).items()}
    with transaction(runtime.session_factory) as session:
        outcome = flows.complete_connect(runtime=runtime, session=session, state=query["state"], code=query["code"],
                                         error=None, cookies={binding.cookie_name: binding.cookie_value})
        assert outcome.ok, outcome.message
    with transaction(runtime.session_factory) as session:
        resource = service.map_calendar(runtime=runtime, session=session, tenant_id=tenant_id, resource_id="agenda",
                                        mapping_in=CalendarMappingWrite(name="Agenda", calendar_id=calendar_id))
        resource_pk = resource.id
    assert flows.sync_resource(runtime=runtime, resource_pk=resource_pk) == "synced"  # channel + empty first sync
    # nobody listens at the channel's address: stop it so edits do not queue pushes
    for channel in google.channels.values():
        channel.stopped = True
    return resource_pk, calendar_id


def measure(label: str, run: Callable[[], int], prepare: Callable[[], None]) -> dict[str, Any]:
    prepare()
    started = time.perf_counter()
    events = run()
    seconds = time.perf_counter() - started
    prepare()
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"case": label, "events": events, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds), "peak_mib": round(peak / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", type=int, default=20_000, help="events in the calendar for the full resync")
    parser.add_argument("--changed", type=int, default=5_000, help="events changed for the incremental sync")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server URL (a bench database is created)")
    args = parser.parse_args()

    from hub.calendar import flows
    from hub.calendar.flows.sync import BUSY_HORIZON, SYNC_WINDOW
    from hub.calendar.models import BusyBlock, CalendarResource
    from hub.calendar.tokens import calendar_connector, get_connection
    from hub.db import transaction

    database_url = (fresh_postgres(args.database_url, "hub_bench_calendar") if args.database_url
                    else f"sqlite:///{tempfile.mkdtemp(prefix='hub-bench-cal-')}/hub.db")
    runtime, server, google = build(database_url)
    try:
        resource_pk, calendar_id = connected_resource(runtime, google)
        with runtime.session_factory() as session:
            resource = session.get(CalendarResource, resource_pk)
            connector = calendar_connector(runtime, session=session,
                                           integration=get_connection(session=session, tenant_id=resource.tenant_id))
        first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        google.bulk_create_events(calendar_id, args.full, start=first, every=timedelta(minutes=30),
                                  duration=timedelta(minutes=20))

        def set_token(token: str | None) -> None:
            with transaction(runtime.session_factory) as session:
                session.execute(update(CalendarResource).where(CalendarResource.id == resource_pk)
                                .values(sync_token=token, sync_wanted=CalendarResource.sync_wanted + 1))

        def hub_sync() -> int:
            assert flows.sync_resource(runtime=runtime, resource_pk=resource_pk) == "synced"
            with runtime.session_factory() as session:
                return session.scalar(select(func.count()).select_from(BusyBlock)) or 0

        def connector_only(token: Callable[[], str | None], include_cancelled: bool) -> Callable[[], int]:
            def run() -> int:
                current = token()
                # the hub's full sync reads its window; read the same events
                now = datetime.now(UTC)
                window = {} if current else {"time_min": now - BUSY_HORIZON, "time_max": now + SYNC_WINDOW}
                return sum(1 for _ in connector.iter_changes(calendar_id, current, include_cancelled=include_cancelled,
                                                             **window)) - 1  # the checkpoint
            return run

        results = []
        # --- full resync of every event (what a 410 leads to) ---
        results.append(measure("full resync: connector alone (baseline)", connector_only(lambda: None, True),
                               lambda: None))
        results.append(measure(f"full resync: hub sync of {args.full:,} events", hub_sync, lambda: set_token(None)))

        # --- incremental: args.changed events moved by half an hour since the last token ---
        with runtime.session_factory() as session:
            base_token = session.get(CalendarResource, resource_pk).sync_token
        changed_ids = list(google.calendars[calendar_id].events)[: args.changed]
        shift = [0]

        def change_events() -> None:
            shift[0] += 1
            set_token(base_token)
            moved = first + timedelta(minutes=shift[0])
            for n, event_id in enumerate(changed_ids):
                begins = moved + n * timedelta(minutes=30)
                google.edit_event(calendar_id, event_id, {"start": {"dateTime": begins.isoformat()},
                                                          "end": {"dateTime": (begins + timedelta(minutes=20))
                                                                  .isoformat()}})

        results.append(measure("incremental: connector alone (baseline)",
                               connector_only(lambda: base_token, False), change_events))
        results.append(measure(f"incremental: hub sync of {args.changed:,} changed events",
                               lambda: hub_sync() and args.changed, change_events))
        print(json.dumps({"database": database_url.split(":")[0], "results": results}, indent=2))
        full_ratio = results[1]["events_per_s"] / results[0]["events_per_s"]
        inc_ratio = results[3]["events_per_s"] / results[2]["events_per_s"]
        print(f"\nfull resync: hub {results[1]['events_per_s']:,} ev/s = {full_ratio:.0%} of the connector alone; "
              f"peak {results[1]['peak_mib']} MiB (connector alone {results[0]['peak_mib']} MiB)")
        print(f"incremental: hub {results[3]['events_per_s']:,} ev/s = {inc_ratio:.0%} of the connector alone; "
              f"peak {results[3]['peak_mib']} MiB (connector alone {results[2]['peak_mib']} MiB)")
    finally:
        server.stop()
        runtime.close()


if __name__ == "__main__":
    main()
