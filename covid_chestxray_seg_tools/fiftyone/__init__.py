"""The FiftyOne companion repo: the build in FiftyOne's own format (the `fiftyone` extra).

export     the build as a FiftyOne dataset, written in FiftyOne's export layout
companion  the companion repo on the Hub: whether it exists, and its publish
"""

__all__: list[str] = []
