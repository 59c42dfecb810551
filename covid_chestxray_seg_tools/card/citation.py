"""The card's citation: BibTeX for this packaging and the works it builds on, and the people upstream credits."""

from __future__ import annotations

import covid_chestxray_seg as recipe

__all__ = ["PACKAGING_YEAR", "citation_text", "packaging_bibtex"]

# The year of this packaging's first release (CITATION.cff says the same).
PACKAGING_YEAR = 2026


def packaging_bibtex(repo_id: str) -> str:
    """BibTeX for this packaging, at the builder's version, on the Hub repo `repo_id`."""
    return f"""@misc{{covid_chestxray_seg,
  title        = {{COVID-19 Chest X-ray Segmentations (Hugging Face packaging), version {recipe.BUILDER_VERSION}}},
  author       = {{{{covid-chestxray-seg contributors}}}},
  howpublished = {{\\url{{https://huggingface.co/datasets/{repo_id}}}}},
  note         = {{Built from GeneralBlockchain's segmentations at commit {recipe.UPSTREAM_COMMIT[:12]}}},
  year         = {{{PACKAGING_YEAR}}}
}}"""


def citation_text(repo_id: str) -> str:
    """The Citation section's generated part: who annotated, what to cite, as one BibTeX block."""
    annotators = " and ".join(recipe.UPSTREAM_ANNOTATORS)
    return (
        "The segmentations are GeneralBlockchain's: upstream says each image was manually annotated by "
        f"qualified radiologists, and credits the radiologists {annotators}. The images and their metadata are "
        "the ieee8023 COVID-19 image data collection's (Cohen et al., arXiv 2003.11597 and 2006.11988); the "
        "severity scores are from Cohen et al., arXiv 2005.11856. Please cite this packaging and the works "
        "it builds on:\n\n"
        f"```bibtex\n{packaging_bibtex(repo_id)}\n{recipe.CITATION.strip()}\n```"
    )
