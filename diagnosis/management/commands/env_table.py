"""Print the configuration table for the README, or the application part of .env.example."""

from django.core.management.base import BaseCommand

from brainscan import envdoc


class Command(BaseCommand):
    help = "Print every environment variable the settings read, as a Markdown table or as .env lines."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=("markdown", "dotenv"), default="markdown")

    def handle(self, *args, format: str, **options):
        variables = envdoc.declarations()
        self.stdout.write(envdoc.markdown_table(variables) if format == "markdown" else envdoc.dotenv(variables),
                          ending="")
