"""The warning that the encoder is random is given once per run, although a run may build two encoders (train.py's,
then evaluate_after's from the checkpoint)."""

import logging

from captioning.model import encoder as encoder_module
from captioning.model.encoder import ResNet50Encoder


def test_random_weights_are_announced_once_per_run(monkeypatch, caplog):
    monkeypatch.setattr(encoder_module, "_warned_random_seeds", set())
    with caplog.at_level(logging.WARNING, logger="captioning.model.encoder"):
        ResNet50Encoder(weights=None)
        ResNet50Encoder(weights=None)  # as load_captioner builds it for evaluate_after=true
    assert caplog.text.count("RANDOM weights") == 1
