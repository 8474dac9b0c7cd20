"""`slot`: the command line for running the dev stack, a demo call and the individual services."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import get_args

from slot.settings import Settings, STTModel, get_settings


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_dev(args: argparse.Namespace) -> int:
    from slot.devstack import run_dev

    return asyncio.run(run_dev(get_settings(), headless=args.headless))


def _cmd_demo(args: argparse.Namespace) -> int:
    from slot.demo import run_demo

    return asyncio.run(
        run_demo(
            get_settings(),
            persona_path=args.persona,
            script=args.script,
            expect=args.expect,
            report_path=args.report,
        )
    )


def _cmd_eval_turns(args: argparse.Namespace) -> int:
    from evals.turns import main

    options = ["--reports", str(args.reports)] if args.reports else []
    options += ["--data", str(args.data)] if args.data else []
    options += ["--rebuild"] if args.rebuild else []
    return main(options)


def _cmd_eval_calls(args: argparse.Namespace) -> int:
    from evals.calls import main

    options = ["--set", args.set]
    options += ["--concurrency", str(args.concurrency)] if args.concurrency else []
    options += ["--personas", str(args.personas)] if args.personas else []
    options += ["--reports", str(args.reports)] if args.reports else []
    options += ["--only", *args.only] if args.only else []
    return main(options)


def _cmd_eval_router(args: argparse.Namespace) -> int:
    from evals.router import main

    return main(["--min-precision", str(args.min_precision)])


def _cmd_eval_kb(args: argparse.Namespace) -> int:
    from evals.kb import main

    return main(["--reports", str(args.reports)] if args.reports else [])


def _cmd_eval_stt(args: argparse.Namespace) -> int:
    from evals.stt import main

    options = ["--reports", str(args.reports)] if args.reports else []
    options += ["--limit", str(args.limit)] if args.limit else []
    return main([*options, "--model", args.model, "--repeat", str(args.repeat)])


def _cmd_bench(args: argparse.Namespace) -> int:
    from evals.bench import main

    options = ["--speech", args.speech]
    options += ["--calls", args.calls] if args.calls else []
    options += ["--out", str(args.out)] if args.out else []
    options += ["--faults"] if args.faults else []
    return main(options)


def _cmd_kb_ingest(args: argparse.Namespace) -> int:
    from activities.knowledge_base import ingest_main

    return ingest_main([str(path) for path in args.paths])


def _cmd_llm_server(args: argparse.Namespace) -> int:
    from simulator.scripted_llm import main

    return main(["--port", str(args.port)])


def _tool_settings() -> Settings:
    """Settings for a tool that reads what a stack wrote: the environment's keys, else those of
    the dev stack under the data folder (never new ones)."""
    from slot.dev_secrets import use_dev_secrets

    return use_dev_secrets(get_settings(), create=False)


def _cmd_replay_check(args: argparse.Namespace) -> int:
    from slot.payload_codec import keyring_of
    from slot.replay import CORPUS_DIR, check

    keyring = keyring_of(_tool_settings())
    return asyncio.run(check(args.folder or CORPUS_DIR, sys.stdout, keyring=keyring))


def _cmd_replay_export(args: argparse.Namespace) -> int:
    from slot.replay import export
    from slot.temporal import connect

    async def run() -> int:
        client = await connect(_tool_settings(), address=args.address)
        for path in await export(client, args.workflow_ids, args.out):
            print(path)
        return 0

    return asyncio.run(run())


def _cmd_replay_script(args: argparse.Namespace) -> int:
    from slot.replay_script import main

    return main(
        _tool_settings(),
        playbook=args.playbook,
        router_config=args.router_config,
        calls=args.calls,
        since=args.since,
        json_out=args.json,
        llm=args.llm,
        address=args.address,
    )


def _cmd_temporal_setup(args: argparse.Namespace) -> int:
    """Exits the process itself: the Temporal client's threads can abort the interpreter's
    finalization of a short-lived process (temporalio/sdk-python#300), and the compose file
    starts the worker and the edge only on this step's exit code 0."""
    from slot.temporal_setup import TemporalSetupError, setup_temporal

    settings = get_settings()
    if args.address:
        settings = settings.model_copy(update={"temporal_address": args.address})
    code = 0
    try:
        added = asyncio.run(setup_temporal(settings, wait_s=args.wait))
    except TemporalSetupError as error:
        print(f"slot temporal setup: {error}", file=sys.stderr)
        code = 1
    else:
        where = f"{settings.temporal_address} namespace {settings.temporal_namespace!r}"
        print(f"registered {', '.join(added)} on {where}" if added else f"already set up: {where}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from slot.database import upgrade_main

    return upgrade_main(get_settings().database_url)


def _cmd_db_current(args: argparse.Namespace) -> int:
    from slot.database import current_main

    return current_main(get_settings().database_url)


def _cmd_api(args: argparse.Namespace) -> int:
    from slot.api.server import main

    main()
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    import worker

    worker.main()
    return 0


def _cmd_edge(args: argparse.Namespace) -> int:
    from media_edge.app import main

    main()
    return 0


def _cmd_codec_server(args: argparse.Namespace) -> int:
    from slot.codec_server import main

    main()
    return 0


def _cmd_payload_key(args: argparse.Namespace) -> int:
    from slot.payload_codec import Keyring

    print(Keyring.new_entry(args.id))
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError
    from rich.console import Console
    from websockets.exceptions import WebSocketException

    from slot.credentials import MissingCredential
    from slot.watch import WatchError, watch_call, watch_campaign

    settings = _tool_settings()
    console = Console(highlight=False)
    try:
        if args.campaign:
            asyncio.run(watch_campaign(settings, args.campaign, console))
            return 0
        return asyncio.run(watch_call(settings, args.call_id, console))
    except MissingCredential as error:
        print(f"slot watch: {error}", file=sys.stderr)
        return 2
    except (WatchError, OSError, RedisError, WebSocketException) as error:
        print(f"slot watch: {error}", file=sys.stderr)
        return 1


def _cmd_campaign_run(args: argparse.Namespace) -> int:
    from slot.campaign_run import parse_window, run_campaign

    try:
        window = parse_window(args.hours, args.days)
    except (ValueError, KeyError) as error:
        print(f"slot campaign run: bad --hours/--days: {error}", file=sys.stderr)
        return 2
    return asyncio.run(
        run_campaign(
            get_settings(),
            args.leads,
            script=args.script or get_settings().default_script,
            campaign_id=args.id,
            window=window,
            attempts=args.attempts,
            retry_after_s=args.retry_after,
            follow_ups=args.follow_ups,
            calls_per_second=args.rate,
            concurrent=args.concurrent,
        )
    )


def _cmd_simulator(args: argparse.Namespace) -> int:
    from simulator.twilio_api import main

    main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run Temporal, the worker, the edge and the simulator")
    dev.add_argument("--headless", action="store_true", help="no Temporal Web UI")
    dev.set_defaults(func=_cmd_dev)

    demo = commands.add_parser("demo", help="one simulated inbound call, end to end")
    demo.add_argument("--persona", type=Path, default=None, help="caller persona YAML")
    demo.add_argument("--script", default=None, help="playbook name (default: settings)")
    demo.add_argument("--expect", default=None, help="outcome the call must reach")
    demo.add_argument("--report", type=Path, default=None, help="write the call report as JSON")
    demo.set_defaults(func=_cmd_demo)

    evals = commands.add_parser("eval", help="offline evaluations").add_subparsers(
        dest="evaluation", required=True
    )
    turns = evals.add_parser(
        "turns", help="endpointing and barge-in policies on labelled phone audio (table and plot)"
    )
    turns.add_argument("--data", type=Path, default=None, help="dataset folder (cached)")
    turns.add_argument("--reports", type=Path, default=None, help="where the table and plot go")
    turns.add_argument("--rebuild", action="store_true", help="synthesize the dataset again")
    turns.set_defaults(func=_cmd_eval_turns)
    calls = evals.add_parser(
        "calls", help="whole simulated calls with the persona corpus (dev and held-out)"
    )
    calls.add_argument("--set", choices=("dev", "heldout", "all"), default="all")
    calls.add_argument("--personas", type=Path, default=None, help="default: personas/")
    calls.add_argument("--concurrency", type=int, default=None, help="calls at once")
    calls.add_argument("--only", nargs="+", default=None, metavar="NAME", help="persona names")
    calls.add_argument("--reports", type=Path, default=None, help="where the reports go")
    calls.set_defaults(func=_cmd_eval_calls)
    router = evals.add_parser(
        "router",
        help="the router's whole decision: thresholds chosen on dev, reported on held-out",
    )
    router.add_argument("--min-precision", type=float, default=0.95)
    router.set_defaults(func=_cmd_eval_router)
    kb_eval = evals.add_parser(
        "kb", help="the knowledge-base section each labelled question gets (dev and held-out)"
    )
    kb_eval.add_argument("--reports", type=Path, default=None, help="where the table goes")
    kb_eval.set_defaults(func=_cmd_eval_kb)
    stt = evals.add_parser(
        "stt",
        help="word error rate of the embedded STT on the persona corpus, with and without "
        "script biasing",
    )
    stt.add_argument("--reports", type=Path, default=None, help="where the table goes")
    stt.add_argument("--limit", type=int, default=None, help="first N lines a split (smoke run)")
    stt.add_argument(
        "--model",
        choices=get_args(STTModel),
        default=Settings.model_fields["stt_model"].default,
        help="the embedded STT to measure",
    )
    stt.add_argument("--repeat", type=int, default=1, help="time each segment N times, keep least")
    stt.set_defaults(func=_cmd_eval_stt)

    bench = commands.add_parser(
        "bench", help="N concurrent simulated calls on one stack, ramping N (figures and a plot)"
    )
    bench.add_argument(
        "--calls", default=None, help="concurrent calls per step (10,25,50,100; --faults: 50)"
    )
    bench.add_argument(
        "--speech", default="standin", help="embedded, standin, or both: embedded,standin"
    )
    bench.add_argument(
        "--faults",
        action="store_true",
        help="50 calls while the worker, the edge and Temporal are killed in turn",
    )
    bench.add_argument("--out", type=Path, default=None, help="default: reports/bench")
    bench.set_defaults(func=_cmd_bench)

    kb = commands.add_parser("kb", help="the knowledge base answers come from").add_subparsers(
        dest="kb_command", required=True
    )
    ingest = kb.add_parser("ingest", help="chunk, embed and store .md/.txt files in Qdrant")
    ingest.add_argument("paths", nargs="+", type=Path, help="files or folders")
    ingest.set_defaults(func=_cmd_kb_ingest)

    llm_server = commands.add_parser(
        "llm-server",
        help="a local OpenAI-protocol server playing a scripted LLM (for LLM_BASE_URL)",
    )
    llm_server.add_argument("--port", type=int, default=8099)
    llm_server.set_defaults(func=_cmd_llm_server)

    replay = commands.add_parser(
        "replay", help="replay recorded call histories on the current workflow code"
    ).add_subparsers(dest="replay_command", required=True)
    replay_check = replay.add_parser(
        "check", help="replay every history in a folder; non-zero exit on the first divergence"
    )
    replay_check.add_argument(
        "folder", nargs="?", type=Path, default=None, help="default: tests/replay/histories"
    )
    replay_check.set_defaults(func=_cmd_replay_check)
    replay_export = replay.add_parser(
        "export", help="fetch workflow histories from a running Temporal into a folder"
    )
    replay_export.add_argument("workflow_ids", nargs="+", metavar="WORKFLOW_ID")
    replay_export.add_argument("--out", type=Path, default=Path("."), help="folder to write")
    replay_export.add_argument("--address", default=None, help="Temporal (default: settings)")
    replay_export.set_defaults(func=_cmd_replay_export)
    replay_script = replay.add_parser(
        "script",
        help="re-decide stored calls with a changed playbook or router config; show what differs",
    )
    replay_script.add_argument("playbook", help="playbook file, or a name in the playbooks folder")
    replay_script.add_argument(
        "--router-config", type=Path, default=None, help="YAML/JSON of RouterConfig fields to set"
    )
    stored = replay_script.add_mutually_exclusive_group(required=True)
    stored.add_argument("--calls", type=Path, default=None, help="folder of call histories")
    stored.add_argument("--since", default=None, help="calls Temporal started this recently: 1d")
    replay_script.add_argument("--json", type=Path, default=None, help="also write the result here")
    replay_script.add_argument(
        "--llm", action="store_true", help="route tier 2 to the LLM (recorded answers replayed)"
    )
    replay_script.add_argument("--address", default=None, help="Temporal (default: settings)")
    replay_script.set_defaults(func=_cmd_replay_script)

    watch = commands.add_parser(
        "watch", help="tail a live call (transcript, states, end) or a campaign (dials, results)"
    )
    target = watch.add_mutually_exclusive_group(required=True)
    target.add_argument("call_id", nargs="?", default=None, help="the call's id")
    target.add_argument("--campaign", default=None, metavar="ID", help="a campaign's id")
    watch.set_defaults(func=_cmd_watch)

    campaign = commands.add_parser("campaign", help="outbound campaigns").add_subparsers(
        dest="campaign_command", required=True
    )
    run = campaign.add_parser(
        "run", help="call a CSV of leads on the dev stack, show progress and a summary"
    )
    run.add_argument("leads", type=Path, help="CSV: lead_id, phone, name, time_zone, simulator")
    run.add_argument("--script", default=None, help="playbook name (default: settings)")
    run.add_argument("--id", default=None, help="campaign id (default: campaign-<UTC time>)")
    run.add_argument("--hours", default="08:00-21:00", help="calling hours, lead's local time")
    run.add_argument("--days", default="mon-fri", help="calling days: mon-fri, all, sat,sun")
    run.add_argument("--attempts", type=int, default=3, help="calls per unanswered lead")
    run.add_argument("--retry-after", type=float, default=3600.0, help="seconds between them")
    run.add_argument("--follow-ups", type=int, default=0, help="call-backs a caller may ask for")
    run.add_argument("--rate", type=float, default=1.0, help="calls per second, shared")
    run.add_argument("--concurrent", type=int, default=3, help="calls on the phone at once")
    run.set_defaults(func=_cmd_campaign_run)

    temporal = commands.add_parser("temporal", help="the Temporal Slot runs on").add_subparsers(
        dest="temporal_command", required=True
    )
    setup = temporal.add_parser(
        "setup", help="register Slot's search attributes (idempotent; waits for Temporal)"
    )
    setup.add_argument("--address", default=None, help="Temporal (default: settings)")
    setup.add_argument("--wait", type=float, default=120.0, help="seconds to wait for Temporal")
    setup.set_defaults(func=_cmd_temporal_setup)

    db = commands.add_parser("db", help="Slot's database (SLOT_DATABASE_URL)").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply the migrations (idempotent)").set_defaults(
        func=_cmd_db_upgrade
    )
    db.add_parser("current", help="the schema revision, against the code's").set_defaults(
        func=_cmd_db_current
    )

    for name, func, help_text in (
        ("worker", _cmd_worker, "run a Temporal worker for call workflows"),
        ("api", _cmd_api, "run the HTTP API (campaigns, leads, calls, do-not-call list)"),
        ("edge", _cmd_edge, "run the media edge (Twilio webhooks and Media Streams)"),
        ("simulator", _cmd_simulator, "run the phone simulator (Twilio's REST API, locally)"),
        ("codec-server", _cmd_codec_server, "decrypt payloads for the Temporal Web UI and CLI"),
    ):
        commands.add_parser(name, help=help_text).set_defaults(func=func)
    payload_key = commands.add_parser(
        "payload-key", help="print a new `id:base64key` entry for SLOT_PAYLOAD_KEYS"
    )
    payload_key.add_argument("--id", required=True, help="key id, e.g. 2025-06")
    payload_key.set_defaults(func=_cmd_payload_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    from slot.payload_codec import PayloadKeyError

    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except PayloadKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
