"""RD plots, the BD-rate table and a single-file HTML report a person opens in a browser."""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import torch
from matplotlib.figure import Figure  # not pyplot's figures: nothing global to close or leak
from PIL import Image

from .. import image as imageio
from ..codec import DEFAULT_TILE, tile_boxes
from ..models import ChannelAttention, CodingModel
from .anchors import LABELS
from .bdrate import bd_rate

METRICS = {"psnr": "PSNR (dB, RGB)", "ms_ssim": "MS-SSIM (RGB)"}


def bd_table(ours: dict, others: dict) -> list[dict]:
    """BD-rate (%) of each of ``ours`` against each other curve of ``others``, for PSNR and MS-SSIM."""
    rows = []
    for name, points in ours.items():
        for anchor, anchor_points in others.items():
            if anchor == name:
                continue
            row = dict(codec=name, anchor=anchor)
            for metric in METRICS:
                row[metric] = bd_rate(
                    [p["bpp"] for p in anchor_points], [p[metric] for p in anchor_points],
                    [p["bpp"] for p in points], [p[metric] for p in points],
                )
            rows.append(row)
    return rows


def format_bd(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.1f}%"


def bd_markdown(rows: list[dict]) -> str:
    lines = ["| attncomp curve | anchor | BD-rate (PSNR) | BD-rate (MS-SSIM) |", "|---|---|---|---|"]
    lines += [f"| {r['codec']} | {r['anchor']} | {format_bd(r['psnr'])} | {format_bd(r['ms_ssim'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_rd(curves: dict, metric: str, highlight=()) -> bytes:
    """One RD plot, every curve labelled, as PNG bytes."""

    def draw(fig, ax):
        for name, points in curves.items():
            xs = [p["bpp"] for p in points if math.isfinite(p[metric])]
            ys = [p[metric] for p in points if math.isfinite(p[metric])]
            if not xs:
                continue
            bold = name in highlight
            ax.plot(xs, ys, marker="o" if bold else ".", linewidth=2.2 if bold else 1.1,
                    linestyle="-" if bold or name in LABELS else "--", label=LABELS.get(name, name))
        ax.set_xlabel("bits per pixel (real file size)")
        ax.set_ylabel(METRICS[metric])
        ax.set_xlim(0, 2.0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # MS-SSIM is undefined below its size floor: maybe no curve at all
            ax.legend(fontsize=7, loc="lower right")

    return figure_png(draw, size=(7.5, 5.2), dpi=110)


def png_bytes(array_or_image) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


GATED = {"g_a": "g_a (latent y)", "h_a": "h_a (hyper-latent z)", "h_s": "h_s (prior)", "g_s": "g_s (RGB)"}


@torch.inference_mode()
def attention_gates(model: CodingModel, image) -> dict:
    """Channel-attention weights of each transform for one image (what the model emphasises), read from the
    model's own forward pass at its quality, so g_s's gate is that of the ŷ the decoder sees (gains and means
    included). Coding runs h_s as its exact fixed-point twin; its float gate is taken on that pass's ẑ."""
    net = model.network
    gated = [name for name in GATED if isinstance(getattr(getattr(net, name, None), "attention", None), ChannelAttention)]
    if not gated:
        return {}
    seen = {}
    hooks = [
        getattr(net, name).attention.register_forward_hook(
            lambda module, args, output, name=name: seen.__setitem__(name, args[0]))
        for name in gated
    ]
    hooks.append(net.entropy_bottleneck.register_forward_hook(
        lambda module, args, output: seen.__setitem__("z_hat", output[0])))
    try:
        x = imageio.pad_to_multiple(imageio.to_tensor(image, model.image_channels), net.downsampling_factor)
        model.estimate(x.to(model.device))
    finally:
        for hook in hooks:
            hook.remove()
    if "h_s" in gated:
        seen["h_s"] = net.h_s.body(seen["z_hat"])
    return {GATED[name]: getattr(net, name).attention.gate(seen[name]).flatten().cpu().numpy() for name in gated}


@torch.inference_mode()
def bit_allocation(model: CodingModel, image) -> np.ndarray:
    """Bits spent at each latent position (−log2 p summed over channels) of the main latent."""
    x = imageio.pad_to_multiple(imageio.to_tensor(image, model.image_channels), model.downsampling_factor)
    likelihoods = model.likelihoods(x.to(model.device))
    main = likelihoods.get("y", next(iter(likelihoods.values())))
    return (-torch.log2(main)).sum(dim=1)[0].cpu().numpy()


def figure_png(draw, size=(6, 2.6), dpi: int = 100) -> bytes:
    """PNG bytes of a figure that ``draw(fig, ax)`` fills in."""
    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.subplots()
    draw(fig, ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _gate_plot(gates: dict, top: float) -> bytes:
    """Each transform's gates, sorted, on the gates' range [0, top] (1 for the paper's sigmoid, 2 for residual)."""
    def draw(fig, ax):
        for name, values in gates.items():
            ax.plot(np.sort(values)[::-1], label=name)
        ax.set_xlabel("channel (sorted)")
        ax.set_ylabel("attention weight")
        ax.set_ylim(0, top)
        ax.legend(fontsize=7)

    return figure_png(draw)


def _bit_map_plot(bits: np.ndarray, total_bpp: float) -> bytes:
    def draw(fig, ax):
        shown = ax.imshow(bits, cmap="magma")
        ax.set_title(f"bits per latent position (main latent), {total_bpp:.3f} bpp", fontsize=8)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.03)

    return figure_png(draw, size=(5, 3.4))


def crop(array: np.ndarray, size: int = 256) -> np.ndarray:
    h, w = array.shape[:2]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return array[top : top + size, left : left + size]


def comparison_rows(evaluation, images, model_label: str, anchor_codecs) -> list[str]:
    """For each kept image: original, attncomp, and each anchor at the closest bpp."""
    by_key = {(r.codec, r.setting, r.image): r for r in evaluation.records}
    settings = sorted(evaluation.models.get(model_label, {}))
    if not settings:
        return []
    chosen = settings[len(settings) // 2]
    rows = []
    for test in images:
        ours = by_key.get((model_label, chosen, test.name))
        if ours is None or test.name not in evaluation.decoded.get((model_label, chosen), {}):
            continue
        cells = [("original", test.array, "")]
        cells.append((f"attncomp {chosen}", evaluation.decoded[(model_label, chosen)][test.name], ours))
        for codec in anchor_codecs:
            candidates = [r for (c, s, n), r in by_key.items() if c == codec and n == test.name]
            if not candidates:
                continue
            best = min(candidates, key=lambda r: abs(r.bpp - ours.bpp))
            cells.append((LABELS.get(codec, codec).split(" (")[0], evaluation.decoded[(codec, best.setting)][test.name], best))
        figures = []
        for title, array, record in cells:
            caption = f"{title}" + (f"<br>{record.bpp:.3f} bpp, {record.psnr:.2f} dB" if record else "<br>&nbsp;")
            figures.append(f"<figure>{img_tag(png_bytes(crop(array)), title)}<figcaption>{caption}</figcaption></figure>")
        rows.append(f"<h3>{html.escape(test.name)}</h3><div class=row>{''.join(figures)}</div>")
    return rows


def html_page(title: str, plots: dict, table: list[dict], sections: list[str], summary: list[dict]) -> str:
    head = "<tr><th>attncomp curve</th><th>anchor</th><th>BD-rate (PSNR)</th><th>BD-rate (MS-SSIM)</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r['codec'])}</td><td>{html.escape(LABELS.get(r['anchor'], r['anchor']))}</td>"
        f"<td>{format_bd(r['psnr'])}</td><td>{format_bd(r['ms_ssim'])}</td></tr>"
        for r in table
    )
    points = "".join(
        f"<tr><td>{html.escape(p['codec'])}</td><td>{html.escape(p['setting'])}</td><td>{p['bpp']:.4f}</td>"
        f"<td>{p['psnr']:.2f}</td><td>{p['ms_ssim']:.4f}</td><td>{p['encode_s']:.3f}</td><td>{p['decode_s']:.3f}</td></tr>"
        for p in summary
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}figure{{display:inline-block;margin:4px;text-align:center;font-size:12px}}
.row{{display:flex;flex-wrap:wrap}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Every number comes from real bitstreams: bytes written by the codec and read back. PSNR is over RGB per image, averaged over the set.</p>
<h2>Rate–distortion</h2>{''.join(img_tag(png, name) for name, png in plots.items())}
<h2>BD-rate (negative: fewer bits than the anchor at equal quality)</h2><table>{head}{body}</table>
<h2>Operating points</h2><table><tr><th>codec</th><th>setting</th><th>bpp</th><th>PSNR</th><th>MS-SSIM</th><th>encode s</th><th>decode s</th></tr>{points}</table>
{''.join(sections)}
</body></html>"""


def model_sections(evaluation, images, anchor_codecs, crops: int = 3) -> list[str]:
    """Per model: side-by-side crops of the first ``crops`` images, then its gates and bits on the first."""
    sections = []
    for label, by_setting in evaluation.models.items():
        rows = comparison_rows(evaluation, images[:crops], label, anchor_codecs)
        if rows:
            sections.append(f"<h2>Side by side: {html.escape(label)} (centre crops, 256 px)</h2>" + "".join(rows))
        settings = sorted(by_setting)
        model = by_setting[settings[len(settings) // 2]]
        test = images[0]
        # the codec codes (and gates) large images tile by tile: show the first tile, in bounded memory
        _, _, h, w = next(tile_boxes(test.image.height, test.image.width, DEFAULT_TILE))
        tile = test.image.crop((0, 0, w, h))
        where = html.escape(test.name) + ("" if tile.size == test.image.size else f", its first {DEFAULT_TILE}-px tile")
        extras = []
        gates = attention_gates(model, tile)
        if gates:
            top = max(m.gate_range for m in model.network.modules() if isinstance(m, ChannelAttention))
            extras.append(img_tag(_gate_plot(gates, top), "attention weights"))
        bits = bit_allocation(model, tile)
        extras.append(img_tag(_bit_map_plot(bits, bits.sum() / (tile.width * tile.height)), "bit allocation"))
        shown = "channel attention and bit allocation" if gates else "bit allocation"
        sections.append(
            f"<h2>{html.escape(label)} {settings[len(settings) // 2]} on {where}: "
            f"{shown}</h2><div class=row>{''.join(extras)}</div>"
        )
    return sections
