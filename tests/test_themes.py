"""Section themes from hierarchical categories: the most specific category with enough
products, never a department that covers most of the catalog."""

from __future__ import annotations

from retrieval import Product
from retrieval.category_tree import CategoryTree
from retrieval.themes import TOP_PICKS, group_into_themes


def _grocery() -> list[Product]:
    """A grocery catalog written as `Department|Category` (ingest splits the two)."""
    leaves = {
        "Frozen Pizza": "Frozen",
        "Ice Cream": "Frozen",
        "Apples": "Produce",
        "Salad Greens": "Produce",
        "Cheddar": "Dairy",
    }
    products = []
    for leaf, aisle in leaves.items():
        for i in range(8):
            products.append(Product(f"{leaf}-{i}", f"{leaf} {i}", ("Grocery", aisle, leaf)))
    products.append(Product("soap", "Hand soap", ("Household", "Soap")))
    return products


def test_the_tree_finds_departments_and_ancestors() -> None:
    tree = CategoryTree.from_products(_grocery())
    assert tree.is_broad("Grocery")  # 40 of 41 products
    assert not tree.is_broad("Frozen")
    assert tree.contains("Grocery", "Frozen Pizza")
    assert tree.contains("Frozen", "Frozen Pizza")
    assert not tree.contains("Frozen Pizza", "Frozen")
    assert not tree.contains("Produce", "Frozen Pizza")
    assert tree.most_specific(["Frozen", "Frozen Pizza", "Apples"]) == ["Frozen Pizza", "Apples"]


def test_sections_name_the_most_specific_category_never_the_department() -> None:
    products = _grocery()
    tree = CategoryTree.from_products(products)
    # Candidates from three leaves of two aisles, interleaved as a ranking would mix them.
    pool = [p for p in products if p.categories[-1] in ("Frozen Pizza", "Ice Cream", "Apples")]
    ranked = [pool[i] for i in sorted(range(len(pool)), key=lambda i: (i % 8, i))]
    themes = group_into_themes(ranked, max_themes=4, min_size=3, tree=tree)
    names = [t.name for t in themes]
    assert names[0] == TOP_PICKS
    assert set(names[1:]) == {"Frozen Pizza", "Ice Cream", "Apples"}
    # Without the tree, the department (on every candidate) and the aisles win instead.
    flat = [t.name for t in group_into_themes(ranked, max_themes=4, min_size=3)]
    assert "Grocery" in flat


def test_a_parent_is_a_theme_when_no_child_has_enough_products() -> None:
    products = _grocery()
    tree = CategoryTree.from_products(products)
    # Two of each produce leaf: neither leaf fills a section, their aisle does.
    produce = [p for p in products if "Produce" in p.categories]
    ranked = [*products[:3], *[p for p in produce if p.product_id[-1] in "01"]]
    themes = group_into_themes(ranked, max_themes=4, min_size=3, tree=tree)
    assert [t.name for t in themes][1:] == ["Produce"]


def test_flat_tags_behave_as_before() -> None:
    """Film genres overlap but do not nest: the tree changes nothing."""
    products = [
        Product(
            str(i),
            f"t{i}",
            ("Comedy" if i % 2 else "Drama", *(("Thriller",) * (i in (0, 1, 4, 8)))),
        )
        for i in range(12)
    ]
    tree = CategoryTree.from_products(products)
    assert not tree.ancestors
    with_tree = group_into_themes(products, max_themes=3, min_size=3, tree=tree)
    without = group_into_themes(products, max_themes=3, min_size=3)
    assert with_tree == without


def test_equal_categories_keep_the_one_written_last() -> None:
    """An aisle that holds only one kind of product: the kind names the section."""
    products = [Product(str(i), f"t{i}", ("Food", "Frozen", "Frozen Pizza")) for i in range(5)]
    products += [Product(f"x{i}", f"x{i}", ("Food", "Bakery")) for i in range(6)]
    tree = CategoryTree.from_products(products)
    assert tree.contains("Frozen", "Frozen Pizza")
    assert not tree.contains("Frozen Pizza", "Frozen")
    assert tree.most_specific(["Frozen", "Frozen Pizza"]) == ["Frozen Pizza"]


def test_a_parent_with_enough_products_beside_its_children_keeps_its_section() -> None:
    """Frozen pizzas fill a section; four other frozen foods of kinds too small for one
    still fill a section of their aisle rather than leaving the page."""
    products = _grocery()
    products += [Product(f"peas-{i}", f"Peas {i}", ("Grocery", "Frozen", "Peas")) for i in range(2)]
    products += [
        Product(f"fries-{i}", f"Fries {i}", ("Grocery", "Frozen", "Fries")) for i in range(2)
    ]
    tree = CategoryTree.from_products(products)
    by_leaf = {
        leaf: [p for p in products if p.categories[-1] == leaf]
        for leaf in ("Apples", "Frozen Pizza", "Peas", "Fries")
    }
    ranked = [
        *by_leaf["Apples"][:3],
        *by_leaf["Frozen Pizza"][:3],
        *by_leaf["Peas"],
        *by_leaf["Fries"],
    ]
    themes = {
        t.name: t.product_ids
        for t in group_into_themes(ranked, max_themes=4, min_size=3, tree=tree)
    }
    assert set(themes) == {TOP_PICKS, "Frozen", "Frozen Pizza"}
    assert all(pid.startswith("Frozen Pizza") for pid in themes["Frozen Pizza"])
    assert sorted(themes["Frozen"]) == ["fries-0", "fries-1", "peas-0", "peas-1"]
    # With one pea and one portion of fries, the aisle has too few left: the pizzas alone.
    ranked = [
        *by_leaf["Apples"][:3],
        *by_leaf["Frozen Pizza"][:3],
        by_leaf["Peas"][0],
        by_leaf["Fries"][0],
    ]
    names = [t.name for t in group_into_themes(ranked, max_themes=4, min_size=3, tree=tree)]
    assert "Frozen Pizza" in names and "Frozen" not in names
