"""The `composer` command-line program: one Typer app, a module per command group.

Each group module (``shop_cmd``, ``models_cmd``, ``pages_cmd``, ``serve_cmd``,
``topology_cmd``, ``access_cmd``, ``eval_cmd``, ``words_cmd``, ``bench_cmd``) declares its
commands on its own ``app``; they are added here, the same way for all. Heavy imports
(models, the server, the harness) happen inside the commands.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from composer.cli import (
    access_cmd,
    bench_cmd,
    eval_cmd,
    experiment_cmd,
    models_cmd,
    pages_cmd,
    serve_cmd,
    shop_cmd,
    topology_cmd,
    words_cmd,
)
from composer.errors import ComposerError
from composer.llm.model_fetch import ModelFetchError
from retrieval import RetrievalError

app = typer.Typer(
    name="composer",
    help="Personalised, LLM-composed e-commerce pages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for group in (
    shop_cmd,
    models_cmd,
    pages_cmd,
    serve_cmd,
    topology_cmd,
    access_cmd,
    eval_cmd,
    experiment_cmd,
    words_cmd,
):
    app.add_typer(group.app)
app.add_typer(bench_cmd.app, name="bench")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; errors a user can fix become one line."""
    import click

    try:
        result = app(args=argv, standalone_mode=False, prog_name="composer")
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        return 130
    except (ComposerError, RetrievalError, ModelFetchError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except ValidationError as exc:
        # Any that gets this far is the environment's settings: commands turn their own
        # inputs into UsageError. Name the variable a user sets, not the field.
        first = exc.errors()[0]
        name = "COMPOSER_" + "__".join(str(part) for part in first["loc"]).upper()
        what = f"setting {name}" if exc.title == "Settings" else exc.title
        sys.stderr.write(f"error: {what}: {first['msg']}\n")
        return 2
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
