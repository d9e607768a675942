"""`recon-cli profile`: per-stage latency percentiles and throughput, ONNX Runtime's per-layer profile,
and roofline estimates for target GPUs (registered by recon.cli.main as `app.command("profile")(profile)`).

Only typer, pathlib and typing are imported here at load time; the runtime is imported when the command runs.
"""

from pathlib import Path
from typing import Optional

import typer

from recon.cli import options


def profile(
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder from `recon-cli export` "
                                         "(default: the model installed with recon)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N (GPU N), tensorrt or openvino."),
    fp16: bool = typer.Option(False, "--fp16", help="Profile the model's FP16 twins (`recon-cli export --fp16` makes them)."),
    int8: bool = typer.Option(False, "--int8", help="Profile the model's INT8 twins (`recon-cli export --int8` "
                              "makes them)."),
    batch: str = typer.Option("1,2,4,8", "--batch", help="Comma-separated batch sizes to measure."),
    iterations: int = typer.Option(20, "--iterations", min=1, help="Timed runs per batch size."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs before the timed ones."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads per network "
                                          "(default: all cores)."),
    json_out: Optional[Path] = options.output_file(None, "Write the whole report as JSON here.", "--json"),
    per_layer: bool = typer.Option(False, "--per-layer", help="ONNX Runtime's profiler: time per op type "
                                   "and per node (top 10 of each)."),
    compare: bool = typer.Option(False, "--compare", help="Each net on ONNX Runtime CPU vs every other "
                                 "engine here: GPU providers, OpenVINO FP32/BF16, INT8 twins (latency, output "
                                 "difference; interleaved runs)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Training run folder the model was "
                                           "exported from, or a model folder (its weights imported into the torch "
                                           "nets): --compare adds PyTorch eager beside ONNX Runtime."),
):
    """Measure each stage (preprocess, sketch, voxel, mesh, end to end) per batch size: min, mean,
    median, p90, p95, p99, max latency and images/s, warm-up runs excluded; each network's share of the
    measured sgemm peak; plus estimates for target GPUs.

    Exit code 0: measured; 2: a usage problem (bad model folder, bad --batch).
    """
    from recon.cli import console as ui
    from recon.runtime import profile as prof
    from recon.runtime.errors import InputError

    batches = prof.parse_batches(batch)
    if model is not None and not Path(model).is_dir():
        raise InputError(f"--model {model}: no such model folder")
    if weights is not None and not Path(weights).is_dir():  # before measuring, not after
        raise InputError(f"--weights {weights}: no such run or model folder")
    out, err = ui.out, ui.err
    precision = options.precision(fp16, int8)
    report = prof.profile_pipeline(model, device=device, batches=batches, iterations=iterations, warmup=warmup,
                                   threads=threads, progress=lambda text: err.print(f"[dim]{ui.esc(text)}[/]"),
                                   precision=precision)
    print_measured(out, report)
    estimates = prof.estimate_nets(model)
    if "nets" in estimates:
        estimates["label"] = prof.ESTIMATE_LABEL
        estimates["devices"] = prof.roofline(estimates["nets"], batches)
    report["estimates"] = estimates
    print_estimates(out, estimates)
    if "nets" in estimates:
        from recon.runtime import speed

        peak = speed.sgemm_peak()
        flops = {net: cost["flops_per_sample"] for net, cost in estimates["nets"].items()}
        report["peak"] = {**peak, "nets": speed.network_efficiency(
            model, device=device, batches=batches, threads=threads, precision=precision, iterations=iterations,
            peak_gflops=peak["gflops"], flops=flops)}
        print_efficiency(out, report["peak"])
    if per_layer:
        report["per_layer"] = prof.profile_layers(model, device=device, batch=batches[0], iterations=iterations,
                                                  warmup=warmup, threads=threads, precision=precision)
        print_layers(out, report["per_layer"])
    if compare:
        from recon.runtime.speed import compare_engines

        report["compare"] = compare_engines(model, iterations=iterations, threads=threads)
        print_compare(out, report["compare"])
        reference = torch_reference(model, weights, iterations, threads)
        report["compare"]["pytorch"] = reference
        if "note" in reference:
            err.print(f"[yellow]note[/] {ui.esc(reference['note'])}")
        for net, row in reference.get("nets", {}).items():
            out.print(f"{net}: ONNX Runtime CPU {row['onnxruntime_cpu_ms']:.2f} ms, PyTorch eager "
                      f"{row['pytorch_eager_ms']:.2f} ms ({row['speedup']:.2f}x), max abs diff {row['max_abs_diff']:.2e}")
    for note in report["notes"]:
        err.print(f"[yellow]note[/] {ui.esc(note)}")
    if json_out is not None:
        from recon.runtime.fileio import write_json_atomic

        write_json_atomic(json_out, report)
        out.print(f"wrote {ui.esc(json_out)}")


def torch_reference(model, weights: Optional[Path], iterations: int, threads: Optional[int]) -> dict:
    """PyTorch eager beside ONNX Runtime when torch is installed and the run folder is given."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return {"note": "PyTorch is not installed: no eager reference"}
    if weights is None:
        return {"note": "PyTorch reference needs the run folder the model was exported from: pass --weights RUN"}
    from recon.export.parity import torch_reference as measure

    return {"nets": measure(model, weights, iterations, threads)}


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_measured(console, report: dict) -> None:
    from rich.table import Table

    from recon.cli.console import esc

    console.print(esc(f"model {report['model']} on {report['provider']} (device {report['device']}, "
                      f"{report['precision'].upper()} files); inputs: {report['inputs']}; {report['warmup']} warm-up + "
                      f"{report['iterations']} timed runs"))
    for batch, entry in report["batches"].items():
        table = Table(title=f"measured, batch {batch}: latency per call (ms) and throughput")
        for column in ("stage", "min", "mean", "median", "p90", "p95", "p99", "max", "images/s"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for stage, stats in entry["stages"].items():
            table.add_row(stage.replace("_", " "), *(_f(stats[f"{k}_ms"]) for k in
                                                    ("min", "mean", "median", "p90", "p95", "p99", "max")),
                          _f(stats["throughput_ips"], 1))
        console.print(table)
        console.print(f"Throughput: {entry['throughput_ips']:.2f} images/s at batch {batch}")
    line = f"host peak memory: {report['host_peak_mb']:.0f} MiB"
    if "gpu_memory_mb" in report:
        gpu = report["gpu_memory_mb"]
        line += f"; GPU memory used: {gpu['used_mb']:.0f} of {gpu['total_mb']:.0f} MiB"
    console.print(line)


def print_estimates(console, estimates: dict) -> None:
    from rich.table import Table

    if "skipped" in estimates:
        from recon.cli.console import esc

        console.print(f"[yellow]note[/] estimates skipped: {esc(estimates['skipped'])}")
        return
    nets = Table(title=f"networks per sample — {estimates['label']}")
    for column in ("net", "GFLOP", "weights MiB", "activations MiB"):
        nets.add_column(column, justify="left" if column == "net" else "right")
    for net, cost in estimates["nets"].items():
        nets.add_row(net, f"{cost['flops_per_sample'] / 1e9:.3f}", f"{cost['weight_bytes'] / 2**20:.1f}",
                     f"{cost['activation_bytes_per_sample'] / 2**20:.1f}")
    console.print(nets)
    table = Table(title=f"target GPUs, sketch + voxel networks — {estimates['label']}")
    for column in ("GPU (vendor spec sheet)", "batch", "sketch ms", "voxel ms", "networks ms", "images/s",
                   "FP16 networks ms", "FP16 images/s"):
        table.add_column(column, justify="left" if column.startswith("GPU") else "right")
    for name, entry in estimates["devices"].items():
        spec = entry["spec"]
        label = f"{name} ({spec['fp32_tflops']} TFLOP/s FP32, {spec['bandwidth_gbs']:g} GB/s)"
        for batch, row in entry["batches"].items():
            table.add_row(label, batch, _f(row.get("sketch_fp32_ms")), _f(row.get("voxel_fp32_ms")),
                          _f(row.get("networks_fp32_ms")), _f(row.get("networks_fp32_ips"), 1),
                          _f(row.get("networks_fp16_ms")), _f(row.get("networks_fp16_ips"), 1))
            label = ""
    console.print(table)
    console.print("[dim]estimate: lower bound = max(FLOPs / peak, bytes / bandwidth); networks only "
                  "(preprocess and mesh run on the CPU); pictures without alpha run the sketch net twice[/]")


def print_layers(console, layers: dict) -> None:
    from rich.table import Table

    from recon.cli.console import esc

    for net, summary in layers.items():
        for key, label in (("by_op", "op type"), ("by_node", "node")):
            table = Table(title=f"{net}: ONNX Runtime profile, top 10 by {label} (batch {summary['batch']}, "
                                f"{summary['runs']} runs, {summary['provider']}; {summary['per_run_ms']:.2f} ms/run)")
            table.add_column(label)
            if key == "by_node":
                table.add_column("op type")
            table.add_column("total ms", justify="right")
            table.add_column("share", justify="right")
            for row in summary[key]:
                cells = [row["op_type"]] if key == "by_op" else [row["node"], row["op_type"]]
                table.add_row(*map(esc, cells), f"{row['total_ms']:.2f}", f"{100 * row['share']:.1f}%")
            console.print(table)


def print_efficiency(console, peak: dict) -> None:
    from rich.table import Table

    table = Table(title=f"networks against this machine's measured sgemm peak: {peak['gflops']:.0f} GFLOP/s "
                        f"(numpy {peak['library']}, FP32)")
    for column in ("net", "running", "batch", "median ms", "GFLOP/s", "share of peak"):
        table.add_column(column, justify="left" if column in ("net", "running") else "right")
    for net, entry in peak["nets"].items():
        for batch, row in entry["batches"].items():
            table.add_row(net, entry["provider"], batch, _f(row["median_ms"]), f"{row['gflops']:.1f}",
                          f"{100 * row['fraction_of_peak']:.0f}%")
    console.print(table)


def print_compare(console, compare: dict) -> None:
    from rich.table import Table

    from recon.cli.console import esc as escape

    table = Table(title="engines, batch 1 (random input, interleaved runs, medians)")
    for column in ("net", "engine", "running", "median ms", "vs ONNX Runtime CPU", "max |diff| vs CPU"):
        table.add_column(column, justify="left" if column in ("net", "engine", "running") else "right")
    for net, rows in compare["nets"].items():
        reference = rows.get("CPUExecutionProvider", {}).get("median_ms")
        for provider, row in rows.items():
            if "error" in row:
                table.add_row(net, provider, f"failed: {escape(row['error'])}", "-", "-", "-")
            else:
                table.add_row(net, provider, row["running"], _f(row["median_ms"]),
                              f"{reference / row['median_ms']:.2f}x" if reference else "-",
                              "-" if "max_abs_diff" not in row else f"{row['max_abs_diff']:.2e}")
    console.print(table)
    for note in compare["notes"]:
        console.print(f"[yellow]note[/] {escape(note)}")
