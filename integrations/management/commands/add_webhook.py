"""Register a webhook endpoint from the command line; its secret is printed as the last line."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from integrations import services
from integrations.models import EVENT_NAMES


class Command(BaseCommand):
    help = ("Register an active webhook endpoint (every event unless --event says which) and print its signing "
            "secret (whsec_...) as the last line. The URL is checked like in the admin: https (http outside "
            "production), and a public address unless BRAINSCAN_WEBHOOK_ALLOW allows it.")

    def add_arguments(self, parser):
        parser.add_argument("url", help="Where deliveries are POSTed.")
        parser.add_argument("--event", action="append", dest="events", choices=EVENT_NAMES,
                            help="An event to receive; repeat for several (default: all).")

    def handle(self, *args, url: str, events: list[str] | None, **options):
        try:
            endpoint = services.register_endpoint(url=url, events=events, via="command")
        except ValidationError as error:
            raise CommandError("The endpoint was not registered: " + " ".join(error.messages)) from error
        self.stdout.write(f"Registered webhook endpoint {endpoint.pk}: {endpoint.url} ({', '.join(endpoint.events)}).")
        self.stdout.write("Its signing secret, shown only now (the receiver verifies every delivery with it):")
        self.stdout.write(endpoint.secret)
