"""pylxd 2.2 drives outpost through a container's life, for tests/pylxd_test.ts.

Usage: pylxd_flow.py SOCKET IMAGE_ALIAS NAME

pylxd speaks LXD's legacy /1.0/containers paths. After each step this prints one JSON line
({"step": ..., ...}) and waits for a line on stdin, so the test can check the daemon in between.
"""
import json
import sys
import threading
import time
from urllib.parse import quote

from pylxd import Client
from pylxd.client import EventType

socket_path, alias, name = sys.argv[1:4]


def step(what, **data):
    print(json.dumps({"step": what, **data}), flush=True)
    if sys.stdin.readline() == "":
        sys.exit("the test went away")


# pylxd takes a unix socket as an http+unix:// URL with the path quoted (a bare path must be a
# regular file for it to be taken as a socket, which a socket is not).
client = Client(endpoint="http+unix://" + quote(socket_path, safe=""))

# Lifecycle events over /1.0/events, read on a thread while the steps run.
events = client.events(event_types={EventType.Lifecycle})
events.connect()
threading.Thread(target=events.run, daemon=True).start()

container = client.containers.create(
    {"name": name, "source": {"type": "image", "alias": alias}}, wait=True
)
step(
    "created",
    status=client.containers.get(name).status,
    listed=[c.name for c in client.containers.all()],
)

container.start(wait=True)
step("started", status=container.status)

result = container.execute(["echo", "hi"])
step("executed", exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr)

container.stop(wait=True)
step("stopped", status=container.status)

container.delete(wait=True)


def actions():
    return [m["metadata"]["action"] for m in getattr(events, "messages", [])]


deadline = time.monotonic() + 5
while "instance-deleted" not in actions() and time.monotonic() < deadline:
    time.sleep(0.05)
events.close()
step("deleted", exists=client.containers.exists(name), events=actions())
