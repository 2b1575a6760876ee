"""Annotations as they come from the wild: nothing unusable gets through, nothing usable is lost."""

import json

from captioning.data.readers import read_annotations
from captioning.vocabulary import Vocabulary
from tests.helpers.layouts import write_layout


def test_unusable_captions_and_paths_are_skipped_and_reported(tmp_path, shapes_root, shapes_entries, caplog):
    entries = [dict(entry) for entry in shapes_entries]
    long_caption = " ".join(["a red circle"] * 40)
    entries[0]["sentences"] = [
        {"raw": ""},
        {"raw": " ... !"},
        {"raw": "Un café très coloré à Paris"},
        {"raw": long_caption},
        {"raw": "Un café très coloré à Paris"},  # duplicate of the third
    ]
    outside = [
        dict(entries[1], filename="../outside.png", sentences=[{"raw": "a trap"}]),
        dict(entries[1], filename="/etc/passwd.png", sentences=[{"raw": "another trap"}]),
    ]
    root = write_layout(tmp_path, "karpathy", entries, shapes_root / "images")
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": entries + outside}))

    table = read_annotations(root)

    first = table.captions[table.captions["image"].str.endswith(entries[0]["filename"])]["caption"].tolist()
    assert first == ["Un café très coloré à Paris", long_caption]
    assert not table.captions["caption"].isin(["a trap", "another trap"]).any()
    good = 5 * (len(entries) - 1)
    assert len(table.captions) == good + 2  # every caption of the other images is kept
    assert "skipped 2 empty or punctuation-only caption(s)" in caplog.text
    assert "skipped 1 duplicate caption(s)" in caplog.text
    assert "Refused 2 image file name(s) outside the dataset root" in caplog.text

    vocabulary = Vocabulary.build(table.captions["caption"], min_frequency=1)
    assert "café" in vocabulary.index and "à" in vocabulary.index
    assert len(vocabulary.encode(long_caption, max_length=20)) == 22  # truncated, <bos> and <eos> added
