"""What one picture gave (`Result`) and what `Result.save` writes: the runtime's output record,
shared by the pipeline, streams, the CLI and the HTTP service. Torch-free.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from recon.runtime.errors import InputError
from recon.runtime.meshio import MESH_WRITERS
from recon.runtime.preprocess import Box

__all__ = ["Result", "OUTPUT_FORMATS", "STAGES", "check_formats"]

# What Result.save writes: every mesh format meshio can write, plus the voxel grid.
OUTPUT_FORMATS = tuple(MESH_WRITERS) + ("npy", "binvox")
STAGES = ("preprocess", "sketch", "voxel", "mesh", "color")  # the keys of Result.timings (color: when coloured)


@dataclass
class Result:
    """What one picture gave. Arrays are numpy; the mesh is a trimesh.Trimesh in the canonical unit
    cube (y up, the object facing -z; docs/design.md). status "failed" comes with `error`."""

    name: str
    status: str = "ok"
    error: Optional[str] = None
    image: Optional[np.ndarray] = None  # (S, S, 3) uint8: the framed crop the networks saw
    box: Optional[Box] = None  # that crop in the input's pixels (top, left, side)
    sketch: Optional[dict] = None  # normals (S, S, 3), depth (S, S), silhouette (S, S) probabilities
    voxels: Optional[np.ndarray] = None  # (R, R, R) occupancy probabilities, axes [x, y, z]
    mesh: object = None  # trimesh.Trimesh
    threshold: float = 0.5  # iso level the mesh was cut at
    volume: Optional[float] = None  # enclosed volume, unit-cube units (largest side of the cube = 1)
    bbox: Optional[list] = None  # [[x, y, z] min, [x, y, z] max], unit-cube units
    scale_m: Optional[float] = None  # metres per unit, when height_m or width_m was given
    volume_m3: Optional[float] = None
    bbox_m: Optional[list] = None
    vertices: int = 0
    faces: int = 0
    watertight: bool = False
    timings: dict = field(default_factory=dict)  # milliseconds per stage: preprocess, sketch, voxel, mesh
    confidence: Optional[float] = None  # [0, 1], see recon.runtime.confidence; None: the model is not calibrated
    framing: str = "auto"  # what framed the picture: auto (the sketch net), follow (the previous frame), alpha, mask or box
    evidence: Optional[dict] = None  # what confidence is computed from (recon.runtime.confidence.evidence)
    features: Optional[np.ndarray] = None  # (F,) the sketch net's pooled encoder features of the crop, if it has them
    view: object = None  # recon.runtime.color.ViewFit: the camera found for the vertex colours (None: grey mesh)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict:
        """The JSON-able numbers (what summary.json holds per input)."""
        keys = ("name", "status", "error", "confidence", "framing", "threshold", "volume", "bbox", "scale_m",
                "volume_m3", "bbox_m", "vertices", "faces", "watertight")
        out = {key: getattr(self, key) for key in keys}
        out["timings_ms"] = {k: round(v, 2) for k, v in self.timings.items()}
        return out

    def save(self, out_dir, stem: str | None = None, formats: Sequence[str] = ("obj",), preview: bool = True) -> dict:
        """Write OUT/<stem>.<format> for each format (meshes: meshio.MESH_WRITERS; voxels: npy = the
        probabilities, binvox = the grid at the threshold) and OUT/<stem>.preview.png; every file
        atomically; OUT is created when missing. Returns {format or "preview": path}. A failed result writes nothing; a no_object one
        only its preview (confidence.MESH_STATUSES have their mesh saved)."""
        from recon.runtime.confidence import MESH_STATUSES
        from recon.runtime.fileio import write_bytes_atomic
        from recon.runtime.meshio import save_mesh
        from recon.runtime.voxels import write_binvox

        formats = check_formats(formats)
        if self.mesh is None:
            return {}
        formats = formats if self.status in MESH_STATUSES else ()
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"{out_dir}: exists and is not a folder")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)  # as `recon-cli infer --out` does
        except OSError as error:
            raise InputError(f"{out_dir}: cannot create the output folder ({error.strerror or error})") from None
        stem = stem or Path(self.name).stem or "result"
        written = {}
        try:  # the files of one result are a group: a failed or interrupted write removes those written
            for fmt in formats:
                path = out_dir / f"{stem}.{fmt}"
                if fmt == "npy":
                    buffer = io.BytesIO()
                    np.save(buffer, self.voxels.astype(np.float32), allow_pickle=False)
                    write_bytes_atomic(path, buffer.getvalue())
                elif fmt == "binvox":
                    write_binvox(path, self.voxels > self.threshold)
                else:
                    save_mesh(self.mesh, path, fmt)
                written[fmt] = path
            if preview:
                from recon.runtime.pictures import save_png

                path = out_dir / f"{stem}.preview.png"
                save_png(path, self.preview())
                written["preview"] = path
        except BaseException:
            for path in written.values():
                path.unlink(missing_ok=True)
            raise
        return written

    def to_html(self, title: str | None = None) -> str:
        """One self-contained HTML page with this result in the interactive 3D viewer (recon.runtime.viewer)."""
        from recon.runtime.viewer import gallery_html

        return gallery_html([self], title=title or self.name)

    def _repr_html_(self) -> str:
        """Jupyter shows the 3D viewer (in an iframe, so its script runs apart from the notebook's)."""
        from recon.runtime.viewer import notebook_html

        return notebook_html(self.to_html())

    def preview(self, cell: int = 160) -> np.ndarray:
        """input | normals | depth | silhouette | the mesh from three viewpoints, as one picture."""
        from recon.runtime.pictures import contact_sheet, depth_image, mask_image, normals_image
        from recon.runtime.render import render_preview

        mask = self.sketch["silhouette"] > 0.5
        verdict = self.status if self.confidence is None else f"{self.status} {self.confidence:.2f}"
        row = [self.image, normals_image(self.sketch["normals"], mask), depth_image(self.sketch["depth"], mask),
               mask_image(mask), render_preview(self.mesh, size=cell)]
        return contact_sheet([row], column_labels=[f"input: {verdict}", "normals", "depth", "silhouette", "mesh"],
                             cell=cell)


def check_formats(formats) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in ([formats] if isinstance(formats, str) else formats))
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown:
        raise InputError(f"format: {', '.join(map(repr, unknown))} not supported; valid: {', '.join(OUTPUT_FORMATS)}")
    return formats
