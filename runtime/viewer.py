"""The offline 3D viewer: HTML pages that show coloured meshes in an interactive three.js view.

One writer fills one template for every use: the `recon-cli infer` gallery (OUT/index.html),
`Result.to_html()` / Jupyter, and the `recon-cli serve` upload page. The library is three.js, vendored
from the npm registry at a pinned version (runtime/viewer_assets/three.VERSION, its licence beside it,
rebuilt by scripts/vendor_three.sh) and inlined into each page with our viewer.js: pages opened from
disk work with no network, and since Chromium refuses fetch() from file://, every mesh rides inside the
page as base64 GLB (about 1.4 x the .glb size; the library adds about 640 kB per page). A gallery
embeds at most MAX_EMBEDDED_MESHES meshes (the rest get cards with their preview and file links), so
a run over thousands of pictures still gives a page a browser opens.
"""

from __future__ import annotations

import base64
import functools
import html
import json
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["ASSETS", "GALLERY_FILE", "MAX_EMBEDDED_MESHES", "gallery_entry", "gallery_html", "write_gallery", "notebook_html", "upload_page_html"]

ASSETS = Path(__file__).with_name("viewer_assets")
GALLERY_FILE = "index.html"
MAX_EMBEDDED_MESHES = 200  # about 130 kB each at the default model's 32^3 grid

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232b; background: #fff; }
header { padding: 12px 20px; border-bottom: 1px solid #e3e6ea; }
h1 { font-size: 18px; margin: 0; }
main { display: flex; flex-wrap: wrap; gap: 16px; padding: 16px 20px; }
.recon-view { flex: 1 1 480px; min-width: 320px; }
canvas.recon-canvas { width: 100%; height: 420px; display: block; border: 1px solid #e3e6ea; border-radius: 6px; }
.recon-caption { color: #5b6570; margin: 6px 0; }
.recon-cards { flex: 1 1 360px; display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.card { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px; }
.card.selected { border-color: #2b6cb0; box-shadow: 0 0 0 2px #bcd3ee; }
.card.failed { background: #fff6f0; }
.card img { width: 100%; image-rendering: auto; }
.card h2 { font-size: 14px; margin: 4px 0; word-break: break-all; }
.status { font-weight: 600; margin: 2px 0; }
.error { color: #a33; }
table.numbers { border-collapse: collapse; font-size: 12px; }
table.numbers td { padding: 1px 8px 1px 0; }
.links a { margin-right: 8px; }
form.upload { border: 2px dashed #b7c0ca; border-radius: 6px; padding: 16px; margin-bottom: 12px; }
form.upload.over { border-color: #2b6cb0; background: #f0f6fc; }
"""


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _script(source: str) -> str:
    # "</script" inside inlined code or data would end the element early.
    return "<script>" + source.replace("</script", "<\\/script") + "</script>"


def _json_script(element_id: str, data) -> str:
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script id="{element_id}" type="application/json">{text}</script>'


def _numbers(summary: Mapping) -> dict:
    """The numbers a card shows, from a Result.summary() (or summary.json entry)."""
    out = {}
    for key in ("volume", "volume_m3", "vertices", "faces", "watertight", "threshold"):
        if summary.get(key) is not None:
            out[key] = summary[key]
    if summary.get("bbox"):
        lo, hi = summary["bbox"]
        out["size (x y z)"] = " ".join(f"{b - a:.3g}" for a, b in zip(lo, hi))
    timings = summary.get("timings_ms") or {}
    if timings:
        out["ms total"] = round(sum(timings.values()), 1)
    return out


def gallery_entry(result, outputs: Mapping[str, str] | None = None, embed_mesh: bool = True) -> dict:
    """What the page needs of one Result: name, status, confidence, numbers, the camera the colours were
    taken from, the mesh as base64 GLB (None without a mesh or when not embed_mesh), and links to the
    files Result.save wrote ({format or "preview": path}), by file name: the page sits beside them."""
    from recon.runtime.meshio import MESH_ENCODERS

    summary = result.summary()
    has_mesh = embed_mesh and result.mesh is not None and len(result.mesh.faces) > 0
    names = {kind: Path(str(path)).name for kind, path in (outputs or {}).items()}
    preview = names.pop("preview", None)
    view = getattr(result, "view", None)
    return {
        "name": Path(str(result.name)).name,
        "status": result.status,
        "error": result.error,
        "confidence": getattr(result, "confidence", None),
        "numbers": _numbers(summary),
        "view": None if view is None else {"azimuth": view.camera.azimuth, "elevation": view.camera.elevation},
        "glb": base64.b64encode(MESH_ENCODERS["glb"](result.mesh)).decode("ascii") if has_mesh else None,
        "preview": preview,
        "files": names,
    }


def _page(title: str, body: str, data: dict | None = None, extra_script: str = "") -> str:
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style></head><body>", body]
    if data is not None:
        parts.append(_json_script("recon-data", data))
    parts += [_script(_asset("three.min.js")), _script(_asset("viewer.js"))]
    if extra_script:
        parts.append(_script(extra_script))
    parts.append("</body></html>")
    return "\n".join(parts)


_VIEW = ('<section class="recon-view"><canvas class="recon-canvas"></canvas>'
         '<p class="recon-caption"></p></section>')


def gallery_html(items: Iterable, title: str = "recon results") -> str:
    """A self-contained page: the 3D view plus one card per item (Results or gallery_entry dicts)."""
    entries = [item if isinstance(item, Mapping) else gallery_entry(item) for item in items]
    ok = sum(entry["status"] == "ok" for entry in entries)
    body = (f"<header><h1>{html.escape(title)}</h1><p>{ok} of {len(entries)} reconstructed. "
            "Offline page: three.js is inside it.</p></header>"
            f'<main>{_VIEW}<section class="recon-cards"></section></main>')
    return _page(title, body, {"items": entries})


def write_gallery(out_dir, entries: list, title: str | None = None) -> Path:
    """Write OUT/index.html atomically; returns its path."""
    from recon.runtime.fileio import write_bytes_atomic

    path = Path(out_dir) / GALLERY_FILE
    write_bytes_atomic(path, gallery_html(entries, title or f"recon: {Path(out_dir).name}").encode("utf-8"))
    return path


def notebook_html(page: str, height: int = 560) -> str:
    """A page inside an iframe's srcdoc: Jupyter runs its scripts apart from the notebook's own."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;border:0" '
            'sandbox="allow-scripts"></iframe>')


def upload_page_html(limits: Mapping) -> str:
    """The `recon-cli serve` page: drop a picture, see the coloured mesh, download GLB/OBJ/PLY."""
    size_mb = limits["max_upload_bytes"] / 1e6
    body = ("<header><h1>recon: one photo to a coloured 3D mesh</h1></header><main>"
            '<section class="recon-cards-side"><form class="upload" id="upload">'
            f"<p>Drop a photo here or choose one (PNG or JPEG, up to {size_mb:.0f} MB, "
            f"{limits['max_pixels'] / 1e6:.0f} megapixels).</p>"
            '<input type="file" id="image" name="image" accept="image/*"> '
            '<button type="submit">reconstruct</button></form>'
            '<p id="status" class="status"></p><div class="recon-cards" id="result"></div></section>'
            f"{_VIEW}</main>")
    return _page("recon serve", body, extra_script=_asset("upload.js"))
