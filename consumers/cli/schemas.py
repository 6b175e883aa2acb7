"""``touchpoints schemas``: export the JSON Schema of every registered event type."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from events.registry import REGISTRY, EventRegistry


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="export the JSON Schemas of the event types",
        description="Print the JSON Schema of every event type (keyed by type name), or of one type, "
        "or write one <type>.schema.json file per type into a folder.",
    )
    parser.add_argument("--type", dest="type_name", metavar="T", help="only this event type (e.g. ad_clicked)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write <type>.schema.json files into DIR")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, registry: EventRegistry = REGISTRY) -> int:
    registry.load_plugins()
    schemas = registry.json_schemas()
    if args.type_name is not None:
        if args.type_name not in schemas:
            print(f"touchpoints schemas: unknown event type {args.type_name!r}; known: {', '.join(schemas)}",
                  file=sys.stderr)
            return 2
        schemas = {args.type_name: schemas[args.type_name]}
    if args.out is None:
        document = schemas[args.type_name] if args.type_name is not None else schemas
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (args.out / f"{name}.schema.json").write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as error:
        print(f"touchpoints schemas: cannot write to {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {len(schemas)} schema(s) to {args.out}", file=sys.stderr)
    return 0
