"""`--version NAME` for commands about one model version.

Django gives every command a `--version` flag (print Django's version); these commands mean the
model version instead, so the parser lets their own option replace it. `--model` is accepted as
well, as in `evaluate_model`.
"""


class ModelVersionOption:
    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    @staticmethod
    def add_version_argument(parser, help_text: str) -> None:
        parser.add_argument("--version", "--model", dest="model_version", help=help_text)
