"""The dataset card: statistics of the built files, the preview picture, the rendered card."""

__all__: list[str] = []
