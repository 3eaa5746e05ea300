"""``thick-digits-cnn``: the digits-cnn recipe trained on stroke-thickened digits (the target domain of ``digits-thick``).

``digits-cnn`` never saw thickened strokes: on the true thickened test digits
it is right about 30% of the time, so it can judge neither the realism (FID)
nor the class preservation of translations *into* the thickened domain. This
extractor is the same network and training recipe (:class:`DigitsCNNExtractor`)
trained on the thickened digits train split (3x3 maximum filter, registered as
training data ``digits-thick`` by ``bench.data``), tested on the thickened test
split; features for FID/PRDC, logits for class preservation.
"""

from __future__ import annotations

from .digits_cnn import DigitsCNNExtractor

__all__ = ["ThickDigitsCNNExtractor"]


class ThickDigitsCNNExtractor(DigitsCNNExtractor):
    """Embedded classifier-based extractor for stroke-thickened 8x8 digits (128-D features, 10 logits)."""

    name = "thick-digits-cnn"
    version = 1
    data_name = "digits-thick"
    MIN_ACCURACY = 0.85  # thickening merges strokes (a 3x3 maximum filter on 8x8 images): below digits-cnn's 0.95
