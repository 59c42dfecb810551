"""The baselines a model should beat, each writing predictions in the layout `evaluate` reads.

atlas    the mean-shape atlas: no training, one atlas per fold under cross-validation
unet     the small U-Net trained on the CPU from size-256 (the `train` extra)
results  the U-Net's committed results file and the card's table rendered from it
nnunet   nnU-Net v2 trained elsewhere (a GPU): its predictions converted, its results file and table
"""

__all__: list[str] = []
