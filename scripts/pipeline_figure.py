"""Draw the README's pipeline picture (corpus -> train -> export -> engine -> stream) as plain SVG text.

Run from the repository root: `python scripts/pipeline_figure.py` writes docs/pipeline.svg (no dependency).
"""

from pathlib import Path

STAGES = [  # (title, command, what it writes)
    ("corpus", "sertrt data synth / prepare", "manifest.jsonl, 16 kHz audio"),
    ("train", "sertrt train", "best.safetensors + best.json"),
    ("export", "sertrt export --precision", "ONNX bundle: fp32 / fp16 / int8"),
    ("engine", "sertrt build-engine", "TensorRT model.plan (on the device)"),
    ("stream", "sertrt stream / predict", "labels per window, torch-free"),
]
BOX_W, BOX_H, GAP, MARGIN = 220, 84, 36, 12


def svg() -> str:
    """The whole picture: one box per stage, arrows between them; the runtime half shaded."""
    width = MARGIN * 2 + len(STAGES) * BOX_W + (len(STAGES) - 1) * GAP
    height = MARGIN * 2 + BOX_H + 26
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#444"/></marker></defs>',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for i, (title, command, writes) in enumerate(STAGES):
        x = MARGIN + i * (BOX_W + GAP)
        fill = "#e8f0fe" if i < 3 else "#e6f4ea"  # torch (train, export) | runtime (no torch)
        parts += [f'<rect x="{x}" y="{MARGIN}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" stroke="#444"/>',
                  f'<text x="{x + BOX_W / 2}" y="{MARGIN + 26}" text-anchor="middle" font-size="17" '
                  f'font-weight="bold">{title}</text>',
                  f'<text x="{x + BOX_W / 2}" y="{MARGIN + 50}" text-anchor="middle" font-size="12" '
                  f'font-family="monospace">{command}</text>',
                  f'<text x="{x + BOX_W / 2}" y="{MARGIN + 70}" text-anchor="middle" font-size="11" '
                  f'fill="#333">{writes}</text>']
        if i:
            parts.append(f'<line x1="{x - GAP + 2}" y1="{MARGIN + BOX_H / 2}" x2="{x - 3}" y2="{MARGIN + BOX_H / 2}" '
                         'stroke="#444" stroke-width="2" marker-end="url(#a)"/>')
    y = MARGIN + BOX_H + 20
    parts += [f'<text x="{MARGIN}" y="{y}" font-size="12" fill="#1a4f9c">train extras: torch, transformers, onnx</text>',
              f'<text x="{width - MARGIN}" y="{y}" text-anchor="end" font-size="12" fill="#1e6b34">'
              'base install: numpy + ONNX Runtime or TensorRT, no torch</text>', "</svg>"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "pipeline.svg"
    out.write_text(svg())
    print(out)
