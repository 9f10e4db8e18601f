"""Splits by content: repeatable, stable when images are added, stratified on
average, and what each layout fixes."""

from __future__ import annotations

import hashlib

import pytest

from training.dataset.splits import MIN_IMAGES_FOR_TEST, assign, held_out_share, position


def _hashes(prefix: str, n: int) -> list[str]:
    return [hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


def _assign(labels, hashes, fixed=None, layout=frozenset(), **kwargs):
    kwargs = {"val_split": 0.2, "test_split": 0.15, "seed": 42, **kwargs}
    return assign(labels, fixed or [None] * len(labels), hashes, layout_splits=layout, **kwargs)


def test_adding_images_never_moves_the_old_ones():
    labels = ["a"] * 300 + ["b"] * 300
    hashes = _hashes("a", 300) + _hashes("b", 300)
    before = _assign(labels, hashes).splits
    grown = _assign(labels + ["a"] * 200 + ["c"] * 100, hashes + _hashes("new", 300)).splits
    assert grown[: len(before)] == before


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_class_gets_its_shares_on_average(seed):
    labels = ["a"] * 2000 + ["b"] * 500
    hashes = _hashes("a", 2000) + _hashes("b", 500)
    splits = _assign(labels, hashes, seed=seed).splits
    for label, n in (("a", 2000), ("b", 500)):
        mine = [s for s, x in zip(splits, labels, strict=True) if x == label]
        # 4 standard deviations of a binomial share
        assert mine.count("test") / n == pytest.approx(0.15, abs=4 * (0.15 * 0.85 / n) ** 0.5)
        assert mine.count("val") / n == pytest.approx(0.20, abs=4 * (0.2 * 0.8 / n) ** 0.5)


def test_copies_of_an_image_land_in_one_split():
    digest = hashlib.sha256(b"same").hexdigest()
    labels = ["a"] * 50 + ["a"] * 3
    splits = _assign(labels, _hashes("a", 50) + [digest] * 3).splits
    assert len(set(splits[-3:])) == 1


def test_unreadable_images_are_in_no_split():
    splits = _assign(["a", "a", "a"], [None, *_hashes("x", 2)]).splits
    assert splits[0] is None


def test_a_tiny_class_gets_an_image_in_every_split():
    labels = ["big"] * 200 + ["tiny"] * 4
    splits = _assign(labels, _hashes("b", 200) + _hashes("t", 4)).splits
    assert set(splits[200:]) == {"train", "val", "test"}


def test_auto_holds_out_a_test_split_only_for_big_enough_classes():
    assert held_out_share(None, {"a": MIN_IMAGES_FOR_TEST, "b": 500})[0] == 0.15
    share, note = held_out_share(None, {"a": MIN_IMAGES_FOR_TEST - 1, "b": 500})
    assert share == 0 and "'a' has 39" in note and "validation only" in note
    assert held_out_share(0.3, {"a": 2})[0] == 0.3
    assert "optimistic" in held_out_share(0.0, {"a": 500})[1]


def test_a_layouts_test_folder_is_the_test_split_and_val_comes_out_of_train():
    labels = ["a"] * 100
    fixed = ["test"] * 20 + ["train"] * 80
    splits = _assign(labels, _hashes("l", 100), fixed, frozenset({"train", "test"})).splits
    assert splits[:20] == ["test"] * 20
    assert set(splits[20:]) == {"train", "val"}


def test_test_comes_out_of_val_when_the_layout_has_no_test_folder():
    labels = ["a"] * 200
    fixed = ["train"] * 100 + ["val"] * 100
    splits = _assign(labels, _hashes("v", 200), fixed, frozenset({"train", "val"})).splits
    assert set(splits[:100]) == {"train"}, "train/ stays training"
    assert set(splits[100:]) == {"val", "test"}


def test_position_is_uniform_and_seeded():
    values = [position(h, 1) for h in _hashes("u", 4000)]
    assert min(values) >= 0 and max(values) < 1
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.03)
    assert position("abc", 1) != position("abc", 2)
