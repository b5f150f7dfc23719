"""The ELS machine's settings (science.els; Kamb & Ganguli, ICML 2025): its patch sizes, banks and paddings,
without torch, so a run's `probes` section is checked when the run is composed."""
from __future__ import annotations

# patch size per equal bin of t over [0, 1] (t = 0 noise): large at high noise, small near the data, the shape of
# the sizes calibrated against trained digits networks (docs/networks.md; Kamb & Ganguli's shipped scales rise
# instead, from 3 at high noise to 17-27 at low noise); memsweep's default for 8x8 images
DEFAULT_PATCH = (7, 5, 5, 3, 3)
PADDINGS = ("zeros", "circular")   # the U-Net pads with zeros
BANKS = ("padded", "interior")     # the training patches: at every pixel (padded) or inside the image only
CALIBRATION_SIZES = tuple(range(3, 18, 2))   # Kamb & Ganguli's candidate scales: odd k from 3 to 17


def candidate_sizes(image_size: int, bank: str, sizes=CALIBRATION_SIZES) -> tuple[int, ...]:
    """The candidate patch sizes that make sense for the image: an interior patch must fit in it; a padded one
    larger than 2 H - 1 sees nothing more."""
    largest = image_size if bank == "interior" else 2 * image_size - 1
    return tuple(int(k) for k in sizes if int(k) % 2 and int(k) <= largest)
