"""docs/model.md states the release card's figures as `python -m ml.card_markdown` prints them."""

from pathlib import Path

import pytest

from ml import card_markdown, figures
from ml.registry import EXTERNAL_FOLDER, ModelRegistry

pytestmark = pytest.mark.no_db
ROOT = Path(__file__).resolve().parents[2]


def test_the_model_page_holds_the_release_cards_figures():
    registry = ModelRegistry(ROOT / "models")
    expected = card_markdown.figures_markdown(registry.active().card, registry.root / EXTERNAL_FOLDER)
    page = (ROOT / "docs" / "model.md").read_text()
    start, end = page.index(card_markdown.BEGIN), page.index(card_markdown.END) + len(card_markdown.END)
    assert page[start:end] == expected, (
        "docs/model.md's figures are stale: replace its card figures block with `python -m ml.card_markdown`")


def test_every_table_row_has_the_header_width(tiny_model):
    _, version = tiny_model
    card = dict(version.card)
    text = card_markdown.figures_markdown(card, Path("/nonexistent"))
    assert "No external validation fold of this recipe has finished yet." in text
    assert "The card records no tumor slices with a mask on the test split." in text  # phantoms have no masks
    assert figures.NO_VOLUMES in text
    tables = [[line for line in section.splitlines() if line.startswith("|")] for section in text.split("###")[1:]]
    assert sum(bool(rows) for rows in tables) >= 6
    for rows in tables:
        assert len({row.count("|") for row in rows}) <= 1, rows
