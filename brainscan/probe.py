"""Container health probes, run by Docker every few seconds (see docker-compose.yml).

    python -m brainscan.probe web [PORT]     the application server answers /livez
    python -m brainscan.probe beat SCHEDULE  beat wrote its schedule file lately (it does after every task
                                             it sends, and it sends the sweeper every BRAINSCAN_SWEEP_SECONDS)

Workers are probed with `celery inspect ping`, which goes through the broker to the worker itself.
A probe reads the settings only, not the whole application, so it costs little.
"""

from __future__ import annotations

import glob
import http.client
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brainscan.settings")


class Unhealthy(Exception):
    pass


def probe_web(port: int = 8000) -> str:
    from django.conf import settings

    # Django answers only the configured host names; ".example.org" also means example.org itself.
    host = next((name.lstrip(".") for name in settings.ALLOWED_HOSTS if name != "*"), "localhost")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/livez", headers={"Host": host})
        status = connection.getresponse().status
    except OSError as error:
        raise Unhealthy(f"the application server does not answer on port {port}: {error}") from None
    finally:
        connection.close()
    if status != 200:
        raise Unhealthy(f"/livez answered {status}")
    return "web: ok"


def probe_beat(schedule: str) -> str:
    from django.conf import settings

    # The schedule is a dbm file; depending on the dbm module it carries a suffix (.db, .dat...).
    written = [os.path.getmtime(path) for path in glob.glob(glob.escape(schedule) + "*")]
    if not written:
        raise Unhealthy(f"beat has not written {schedule} yet")
    age, limit = time.time() - max(written), 3 * settings.SWEEP_EVERY_SECONDS + 30
    if age > limit:
        raise Unhealthy(f"beat last wrote its schedule {age:.0f} s ago (limit {limit} s)")
    return f"beat: schedule written {age:.0f} s ago"


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["web"]:
            print(probe_web(*(int(port) for port in argv[1:2])))
        elif argv[:1] == ["beat"] and len(argv) == 2:
            print(probe_beat(argv[1]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Unhealthy as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
