import torch
from PIL import Image

from captioning.visual.attention import attention_figure


def test_every_word_is_drawn_on_one_colour_scale():
    peaked = torch.zeros(49)
    peaked[24] = 1.0
    flat = torch.full((49,), 1 / 49)
    figure = attention_figure(Image.new("RGB", (64, 48)), ["red", "circle"], torch.stack([peaked, flat]))
    overlays = [axis.images[1] for axis in figure.axes[1:3]]  # each word's panel: the image, then its map
    assert overlays[0].get_clim() == overlays[1].get_clim()  # a flat map is not stretched to look peaked
    assert overlays[0].get_clim()[0] == 0.0 and overlays[0].get_clim()[1] > 0.5


def test_a_photo_keeps_its_aspect_ratio_with_the_attention_stretched_over_it():
    # A wide photo, attention on the top-left region alone: the model saw the photo squashed to a square,
    # so that region is the photo's top-left seventh in each direction, not a square.
    top_left = torch.zeros(49)
    top_left[0] = 1.0
    figure = attention_figure(Image.new("RGB", (640, 320)), ["sky"], top_left[None])
    photo, overlay = (image.get_array() for image in figure.axes[1].images)
    assert photo.shape[:2] == overlay.shape == (112, 224)  # 2:1 as the photo, not 224x224
    rows, columns = overlay.shape
    assert overlay[: rows // 14, : columns // 14].mean() > 5 * overlay[rows // 2 :, columns // 2 :].mean()
    assert overlay[: rows // 7, : columns // 7].mean() > overlay[: rows // 7, columns // 7 : 2 * columns // 7].mean()


def test_a_14x14_grid_is_drawn_as_14x14_cells():
    # One weight on the region of row 3, column 10 of 196: its light falls in that cell of the square photo.
    weights = torch.zeros(196)
    weights[3 * 14 + 10] = 1.0
    figure = attention_figure(Image.new("RGB", (224, 224)), ["sun"], weights[None])
    overlay = figure.axes[1].images[1].get_array()
    assert overlay.shape == (224, 224)
    row, column = divmod(int(overlay.argmax()), 224)
    assert (row // 16, column // 16) == (3, 10)  # 16-pixel cells: 224 / 14
