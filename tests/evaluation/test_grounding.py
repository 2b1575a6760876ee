import pytest

from captioning.evaluation.grounding import grounding_score

# One red circle in the top-left cell of a 224x224 image (7x7 grid of 32-pixel cells).
OBJECTS = {"a.png": [{"shape": "circle", "colour": "red", "size": "small", "box": [0, 0, 40, 40]}]}


def one_hot(region: int) -> list[float]:
    return [1.0 if index == region else 0.0 for index in range(49)]


def test_words_naming_an_object_score_where_their_strongest_region_falls():
    prediction = {
        "image": "images/a.png",
        # "a" names nothing; "red" looks at the circle (region 0); "circle" looks at the far corner (48);
        # "square" names no object of the image and is left out.
        "generated": "a red circle square",
        "attention": [one_hot(0), one_hot(0), one_hot(48), one_hot(0)],
    }
    score = grounding_score([prediction], OBJECTS, image_size=224)
    assert score["grounded_words"] == 2
    assert score["grounding"] == pytest.approx(0.5)
    # the box [0, 40) overlaps cells 0, 1, 7 and 8 of 49
    assert score["grounding_chance"] == pytest.approx(4 / 49)


def test_no_named_object_gives_no_score():
    prediction = {"image": "a.png", "generated": "a blue square", "attention": [one_hot(0)] * 3}
    assert grounding_score([prediction], OBJECTS, image_size=224)["grounding"] is None


def test_a_14x14_grid_is_grounded_in_its_16_pixel_cells():
    # The circle's box [0, 40) overlaps the 16-pixel cells of rows and columns 0-2: 9 of 196 regions.
    def one_hot_of_196(row: int, column: int) -> list[float]:
        return [1.0 if index == row * 14 + column else 0.0 for index in range(196)]

    prediction = {
        "image": "a.png",
        "generated": "red circle",
        "attention": [one_hot_of_196(2, 2), one_hot_of_196(0, 3)],
    }
    score = grounding_score([prediction], OBJECTS, image_size=224)
    assert score["grounding"] == pytest.approx(0.5)  # (2, 2) spans [32, 48): inside; (0, 3) starts at 48: outside
    assert score["grounding_chance"] == pytest.approx(9 / 196)
