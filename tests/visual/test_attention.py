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
