"""A caption given twice for one image is skipped once, and the warning says what it is: rows of results.csv
repeat a caption under another comment number, so they are not 'exact duplicate rows'."""

import logging

from captioning.data.readers import read_annotations
from tests.helpers.layouts import write_layout


def test_a_caption_repeated_under_another_comment_number_is_called_a_duplicate_caption_of_one_image(
    tmp_path, shapes_root, shapes_entries, caplog
):
    entries = [dict(entry) for entry in shapes_entries]
    entries[0]["sentences"] = [{"raw": "a red circle"}, {"raw": "a red circle"}, {"raw": "a blue square"}]
    root = write_layout(tmp_path, "results_csv", entries, shapes_root / "images")
    lines = (root / "flickr30k_images" / "results.csv").read_text().splitlines()
    assert (
        f"{entries[0]['filename']}| 0| a red circle" in lines and f"{entries[0]['filename']}| 1| a red circle" in lines
    )

    with caplog.at_level(logging.WARNING):
        table = read_annotations(root)

    first = table.captions[table.captions["image"].str.endswith(entries[0]["filename"])]["caption"].tolist()
    assert first == ["a red circle", "a blue square"]
    assert "skipped 1 duplicate caption(s) of one image" in caplog.text
    assert "exact duplicate" not in caplog.text
