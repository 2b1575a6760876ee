"""Show, Attend and Tell image captioning with PyTorch Lightning and Hydra."""
