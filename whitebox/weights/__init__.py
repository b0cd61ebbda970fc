"""Weights from the ecosystem without PyTorch: file formats, CRATE-alpha's JAX layout, resizing, fine-tuning."""
