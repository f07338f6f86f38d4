"""The zoo's names, descriptions, default and λ table, and the decoder's precisions, without torch.

``attncomp-codec`` needs these for its ``--help`` and to check its arguments
before it knows that it will code anything; importing torch to read a few
strings would cost seconds. Each entry names its model *kind* as a string;
:mod:`attncomp.models.zoo` maps kinds to classes and builds ``ZOO`` from here.
Nothing heavy may be imported in this module (tests/test_startup.py checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import WeightsError

# CompressAI's λ for its qualities 1..8 (loss = λ·255²·MSE + bpp): attncomp's quality q uses the same λ
COMPRESSAI_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.18}
LITE = dict(N=64, M=128, postfilter_channels=32)
QUALITY_STEPS = 100  # qualities are coded in hundredths: a stream records 100·q, 3.5 → 350


def quality_steps(quality: float) -> int:
    """``quality`` in the hundredths a stream records it in (3.5 → 350)."""
    return round(float(quality) * QUALITY_STEPS)


def on_quality_grid(quality: float) -> bool:
    """Whether a stream can record ``quality`` exactly (whole hundredths)."""
    return quality_steps(quality) / QUALITY_STEPS == quality


SYNTHESIS_PRECISIONS = ("float32", "mixed", "bf16")
"""How a decoder synthesises the image of exactly decoded latents: ``float32`` throughout; ``mixed``, a
residual post-filter's correction f(x̃) in bf16 and everything else (g_s, the image it corrects, the sum) in
float32; ``bf16``, g_s and the post-filter under bf16 autocast. The latents are the same at each."""
DEFAULT_PRECISION = "mixed"

DEFAULT_MODEL = "attn-hyperprior-vbr"
"""What ``attncomp-codec`` and ``attncomp-eval`` code with unless told: the variable-rate model, ahead of the
fixed-rate ones on the validation split (README, *The bundled variable-rate model*)."""
DEFAULT_TRAINING_MODEL = "attn-hyperprior"
"""What ``attncomp-train`` trains unless told: a fixed-rate model, so that ``--lmbda X`` trains that λ (a
variable-rate model trains all of its λs at once and refuses one)."""
DEFAULT_QUALITY = 3


@dataclass(frozen=True)
class CatalogEntry:
    kind: str  # "hyperprior" (AttentionHyperprior) or "spatial-ae" (SpatialAttentionAE)
    config: dict
    description: str = ""
    lambdas: dict = field(default_factory=lambda: dict(COMPRESSAI_LAMBDAS))

    @property
    def variable_rate(self) -> bool:
        """One set of weights for every quality from 1 to its number of λs (``config["lambdas"]``)."""
        return bool(self.config.get("lambdas"))


CATALOG: dict[str, CatalogEntry] = {
    "attn-hyperprior": CatalogEntry(
        "hyperprior", LITE, "paper architecture at a CPU-trainable size, fixed-rate: qualities 1, 3, 5, 7 bundled"
    ),
    "attn-hyperprior-paper": CatalogEntry(
        "hyperprior", dict(N=192, M=320, postfilter_channels=192), "paper sizes N=192, M=320"
    ),
    "plain-hyperprior": CatalogEntry(
        "hyperprior", dict(LITE, attention="none", postfilter="none"), "ablation: no attention, no post-filter"
    ),
    "attn-hyperprior-noPF": CatalogEntry(
        "hyperprior", dict(LITE, postfilter="none"), "ablation: attention, no post-filter"
    ),
    "attn-hyperprior-vbr": CatalogEntry(
        "hyperprior",
        dict(LITE, M=192, attention="residual", postfilter="residual", prior="mean-scale",
             lambdas=tuple(COMPRESSAI_LAMBDAS.values())),
        "one variable-rate model for every quality from 1 to 8, fractional ones too (the ablation's winner: "
        "residual blocks, mean-scale prior, M=192)",
    ),
    "spatial-ae": CatalogEntry("spatial-ae", dict(in_channels=3), "Wibowo's autoencoder, RGB"),
    "spatial-ae-gray": CatalogEntry("spatial-ae", dict(in_channels=1), "Wibowo's autoencoder, grayscale as the paper"),
}


def check_quality(name: str, quality: float) -> None:
    """Refuse a quality the zoo's ``name`` cannot code: a variable-rate model codes 1 to its number of
    levels in hundredths, a fixed-rate one the qualities of its λ table."""
    entry = CATALOG[name]
    if entry.variable_rate:
        levels = len(entry.config["lambdas"])
        if not 1 <= quality <= levels or not on_quality_grid(quality):
            raise WeightsError(f"quality {quality:g} is not between 1 and {levels} in steps of 0.01")
    elif quality not in entry.lambdas:
        variable_rate = ", ".join(n for n, e in CATALOG.items() if e.variable_rate)
        raise WeightsError(
            f"quality {quality:g} is not defined for {name}: use 1..{max(entry.lambdas)}"
            + ("" if quality % 1 == 0 else f"; fractional qualities need a variable-rate model such as {variable_rate}")
        )
