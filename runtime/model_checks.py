"""What a model folder's networks must be, checked when the folder loads (`recon.runtime.model`).

Hashes in model.json only prove the files are the ones model.json lists; a folder whose model.json was
rewritten (networks swapped, one network taken from another export, weights kept in an unlisted file)
passes them. So, per network: its input and output names and shapes against the contract below (the
roles the pipeline feeds and reads), its external-data files listed (and so hashed) in model.json; across
the folder: both networks from one export, and model.json's metadata copy equal to the ONNX metadata.
"""

from __future__ import annotations

from pathlib import Path

from recon.runtime.errors import ModelError

# net -> ("inputs" | "outputs") -> name -> dims: "B" any batch, "S" recon.image_size, "R" recon.voxel_res.
CONTRACT = {
    "sketch": {"inputs": {"image": ("B", 3, "S", "S")},
               "outputs": {"normals": ("B", 3, "S", "S"), "depth": ("B", 1, "S", "S"),
                           "silhouette": ("B", 1, "S", "S")}},
    "voxel": {"inputs": {"sketch": ("B", 5, "S", "S")}, "outputs": {"occupancy": ("B", "R", "R", "R")}},
}
# Outputs a network may have beyond the contract: the sketch net's pooled encoder features (exports since
# the confidence weighs them; a folder without them runs, and its confidence cannot use them). None: any size.
OPTIONAL = {"sketch": {"outputs": {"features": ("B", None)}}}
# Provenance both networks carry from the one export that wrote them.
SAME_EXPORT_KEYS = ("recon.export_time", "recon.git_commit", "recon.stage_weights", "recon.data_fingerprint",
                    "recon.preset", "recon.threshold")


def _describe(args) -> str:
    return ", ".join(f"{arg.name!r} {list(arg.shape)}" for arg in args)


def check_network(path: Path, net: str, session, metadata: dict) -> None:
    """The ONNX Runtime session of MODEL/<net>.onnx has the contract's names, ranks and fixed sizes."""
    sizes = {"S": _int(metadata.get("recon.image_size")), "R": _int(metadata.get("recon.voxel_res"))}
    expected = CONTRACT[net]
    other = next(name for name in CONTRACT if name != net)
    for kind, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        want = expected[kind]
        got = {arg.name: list(arg.shape) for arg in args}
        optional = OPTIONAL.get(net, {}).get(kind, {})
        hint = (f" (this is the {other} network: are sketch.onnx and voxel.onnx swapped?)"
                if set(got) - set(OPTIONAL.get(other, {}).get(kind, {})) == set(CONTRACT[other][kind]) else "")
        if not set(want) <= set(got) <= set(want) | set(optional):
            raise ModelError(f"{path}: {kind} {_describe(args)}, expected "
                             f"{', '.join(repr(n) for n in want)}{hint}; export the model again")
        for name, dims in {**want, **{n: d for n, d in optional.items() if n in got}}.items():
            shape = got[name]
            fits = len(shape) == len(dims) and all(
                d in ("B", None) or not isinstance(s, int) or s == (sizes.get(d) if isinstance(d, str) else d)
                for s, d in zip(shape, dims))
            if not fits:
                wanted = [sizes.get(d) or d if isinstance(d, str) else d for d in dims]
                raise ModelError(f"{path}: {kind[:-1]} {name!r} has shape {shape}, expected {wanted}{hint}; "
                                 "export the model again")


def check_folder(folder: Path, manifest: dict, per_net: dict) -> None:
    """Both networks from one export; model.json's metadata copy agreeing with the ONNX metadata."""
    for key in SAME_EXPORT_KEYS:
        values = {net: meta.get(key) for net, meta in per_net.items()}
        if None not in values.values() and len(set(values.values())) > 1:
            raise ModelError(f"{folder}: sketch.onnx and voxel.onnx come from different exports ({key}: "
                             f"{values['sketch']!r} vs {values['voxel']!r}); export the model again")
    copy = manifest.get("metadata")
    if not isinstance(copy, dict):
        return
    for net, meta in per_net.items():
        for key, value in meta.items():
            if key in copy and str(copy[key]) != value:
                raise ModelError(f"{folder / 'model.json'}: metadata {key} = {str(copy[key])[:60]!r}, but {net}.onnx "
                                 f"says {value[:60]!r} (edited or mixed up); export the model again")


def check_external_data(path: Path, listed) -> None:
    """Every external-data file `path` references is a plain name beside it that model.json lists
    (so it was hashed with the rest); ONNX Runtime would otherwise load weights nobody verified."""
    for location in external_data_files(path):
        if Path(location).name != location or location in ("", ".", ".."):
            raise ModelError(f"{path}: refers to external data {location!r} outside the model folder")
        if location not in listed:
            raise ModelError(f"{path}: keeps weights in {location}, which model.json does not list (unverified); "
                             "export the model again")


def external_data_files(path: Path) -> list[str]:
    """The `location`s of the external-data tensors of an ONNX file (initializers and Constant nodes),
    read from the protobuf wire format directly (the runtime does not depend on the onnx package)."""
    try:
        model = memoryview(Path(path).read_bytes())
        locations = []
        for graph in _submessages(model, 7):  # ModelProto.graph
            tensors = list(_submessages(graph, 5))  # GraphProto.initializer
            for node in _submessages(graph, 1):  # GraphProto.node -> NodeProto.attribute -> t / tensors
                for attribute in _submessages(node, 5):
                    tensors += list(_submessages(attribute, 5)) + list(_submessages(attribute, 10))
            for tensor in tensors:
                for entry in _submessages(tensor, 13):  # TensorProto.external_data: StringStringEntryProto
                    fields = {number: bytes(value).decode("utf-8", "replace")
                              for number, value in _fields(entry) if isinstance(value, memoryview)}
                    if fields.get(1) == "location":
                        locations.append(fields.get(2, ""))
        return sorted(set(locations))
    except (OSError, ValueError, IndexError) as error:
        raise ModelError(f"{path}: cannot read the ONNX file ({error})") from None


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _varint(buffer: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(buffer: memoryview):
    """(field number, value) of one protobuf message: ints for varints, memoryviews for length-delimited."""
    at = 0
    while at < len(buffer):
        key, at = _varint(buffer, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(buffer, at)
        elif wire == 2:
            length, at = _varint(buffer, at)
            value, at = buffer[at:at + length], at + length
        elif wire in (1, 5):
            value, at = None, at + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, value


def _submessages(buffer: memoryview, number: int):
    return (value for field, value in _fields(buffer) if field == number and isinstance(value, memoryview))
