"""`disputeflow payload-key add`: rotate the payload encryption key of the key file."""

from __future__ import annotations

from types import SimpleNamespace

import click

from disputeflow.cli import command


@command("payload-key", "Add or list the keys that encrypt Temporal payloads (the key file; never prints a key). "
                        "ACTION add: a new key that encrypts from now on (the old ones still decrypt); "
                        "list: the key ids, oldest first.")
@click.argument("action", type=click.Choice(["add", "list"]))
def payload_key(args: SimpleNamespace) -> int:
    from disputeflow.codec import PayloadKeyError, add_key, default_key_file, load_keys
    from disputeflow.settings import get_settings

    settings = get_settings()
    try:
        if args.action == "list":
            for key in load_keys(settings):
                print(key.id)
            return 0
        if settings.payload_keys is not None:
            print("the payload keys come from DISPUTEFLOW_PAYLOAD_KEYS: add the new key there (id:base64key, last)")
            return 2
        path = default_key_file(settings)
        load_keys(settings)  # the dev default file exists before a key is added to it
        key = add_key(path)
    except PayloadKeyError as error:
        print(error)
        return 2
    print(f"added payload key {key.id} to {path}: it encrypts from now on; restart the worker and the API. "
          "Keep the old keys as long as histories encrypted with them are kept.")
    return 0
