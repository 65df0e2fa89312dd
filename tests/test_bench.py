"""The kernel benchmark (experiments/kernels.py) on tiny shapes, and the SD 1.4 shape tracer.

One benchmark run (module-scoped: about 20 s on two cores) of every op on OpenCL and JAX in
float32; the tests read its rows and files."""

import csv
import math

import pytest

from experiments import kernels, sd_shapes

#: the fp32 bound of every row, and Winograd F(6)'s own (its transforms' entries are larger)
FP32_BOUND = 1e-4
WINOGRAD6_FP32_BOUND = 1e-3


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    pytest.importorskip("pyopencl")
    out = tmp_path_factory.mktemp("bench")
    result = kernels.run(ops=kernels.OPS, backends=("opencl", "jax"), dtypes=("float32",), size="tiny",
                         repeats=10, warmup=1, out=out, command="pytest tests/test_bench.py",
                         backends_required=True)
    return result


def rows_of(bench, **match):
    return [r for r in bench.rows if all(r[k] == v for k, v in match.items())]


def test_every_op_variant_and_backend_has_a_row(bench):
    for bench_op in kernels.BENCHMARKS.values():
        for backend in ("opencl", "jax"):
            for variant in bench_op.variants:
                if variant.backends and backend not in variant.backends:
                    assert not rows_of(bench, op=bench_op.op, backend=backend, variant=variant.name)
                    continue
                assert rows_of(bench, op=bench_op.op, backend=backend, variant=variant.name), (bench_op.op, backend,
                                                                                             variant.name)


def test_every_row_is_checked_against_float64_then_timed(bench):
    for row in bench.rows:
        assert "note" not in row, row
        bound = WINOGRAD6_FP32_BOUND if row["variant"] == "winograd6" else FP32_BOUND
        # > 0: an fp32 output always differs from float64 somewhere, so 0 means nothing was compared
        assert math.isfinite(row["rel_error"]) and 0 < row["rel_error"] < bound, row
        assert row["check"] == "ok", row
        assert row["device_ms"] > 0 and row["wall_ms"] > 0, row
        assert row["GB/s"] > 0 and row["ceiling"] and row["of_ceiling"] > 0, row
        assert (row["TFLOP/s"] is None) == (row["op"] in ("group_norm+silu", "geglu")), row


def test_roles_and_peer_speedups(bench):
    roles = {(r["backend"], r["variant"]): r["role"] for r in bench.rows}
    assert roles["opencl", "fused"] == "ours" and roles["opencl", "unfused"] == "baseline"
    assert roles["jax", "unfused"] == "peer" and roles["jax", "naive"] == "peer" and roles["jax", "direct"] == "peer"
    assert roles["jax", "flash"] == "ours" and roles["jax", "winograd4"] == "ours"
    for row in bench.rows:  # every op has an XLA peer here, so every row has a speed against it
        assert row["vs_best_peer"] > 0, row


def test_opencl_fusion_claims_in_numbers(bench):
    (fused,) = rows_of(bench, op="group_norm+silu", backend="opencl", variant="fused")
    (unfused,) = rows_of(bench, op="group_norm+silu", backend="opencl", variant="unfused")
    # one launch; its only temporary the (N, G, parts, 2) float32 partial statistics (tiny shape: one part)
    assert fused["launches"] == 1 and fused["temp_bytes"] == 2 * 32 * 1 * 2 * 4
    assert unfused["launches"] == 4 and unfused["temp_bytes"] > 0  # mean, variance temporaries + silu
    (flash,) = rows_of(bench, op="attention", backend="opencl", variant="flash")
    assert flash["launches"] == 1 and flash["temp_bytes"] == 0
    for row in rows_of(bench, backend="jax"):
        assert row["launches"] is None and row["temp_bytes"] is None


def test_outputs_are_written_with_their_headers(bench):
    csv_path, md_path, *pngs = bench.paths
    lines = csv_path.read_text().splitlines()
    header = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    for key in ("date", "commit", "command", "shapes", "device opencl", "device jax", "device torch", "versions",
                "ceiling 1"):
        assert header[key], key
    assert header["status"] == "complete"
    assert header["command"] == "pytest tests/test_bench.py"
    table = list(csv.DictReader(line for line in lines if not line.startswith("# ")))
    assert len(table) == len(bench.rows) and table[0].keys() == set(kernels.COLUMNS)
    markdown = md_path.read_text()
    assert "- commit: " in markdown and "## conv3x3 (winograd)" in markdown
    assert [p.name for p in pngs] == [f"{csv_path.stem}_{op}.png" for op in kernels.OPS]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(bench.summary) == len(kernels.OPS)


def test_sd14_convolutions_come_from_the_network():
    convs = sd_shapes.conv3x3_shapes()
    for shape in [(2, 320, 64, 64, 320), (2, 1280, 16, 16, 1280), (1, 512, 128, 128, 512), (1, 128, 512, 512, 128),
                  (2, 2560, 16, 16, 1280), (2, 2560, 8, 8, 1280), (2, 4, 64, 64, 320), (1, 128, 512, 512, 3)]:
        assert shape in convs, shape
    assert len(convs) == len(set(convs))
    assert all(s in convs for s in kernels.Conv3x3.REPRESENTATIVES)


def test_sd14_linears_and_the_listed_shapes_are_in_the_trace():
    linears = sd_shapes.linear_shapes()
    assert (8192, 320, 2560) in linears and (154, 768, 320) in linears and (2, 320, 1280) in linears
    assert all(s in linears for s in kernels.Linear.REDUCED)
    calls = [c for counter in sd_shapes.sd14_calls().values() for c in counter]
    group_norms = {c.inputs[0] for c in calls if c.op == "group_norm" and c.kwarg("silu")}
    assert set(kernels.GroupNormSiLU.FULL) <= group_norms
    gegl_inputs = {c.inputs[0] for c in calls if c.op == "geglu"}
    assert set(kernels.GEGLU.FULL) <= gegl_inputs
    attention = {q[:3] + (k[2], q[3]) for c in calls if c.op == "attention" for q, k, _ in [c.inputs]}
    assert set(kernels.Attention.FULL) <= attention


def test_sd14_attention_work_counted_from_the_unet_layout():
    # derived here from SD 1.4's layout, not from the trace: transformers per latent side (down +
    # up blocks; the mid block at 8 x 8), 8 heads of d = channels / 8, self-attention over the
    # side^2 tokens and cross-attention over 77, batch 2; 2 FLOPs per multiply-add, Q K^T and P V
    transformers = {64: (320, 5), 32: (640, 5), 16: (1280, 5), 8: (1280, 1)}
    expected = sum(count * 2 * 2 * 8 * side**2 * m * 2 * (channels // 8)
                   for side, (channels, count) in transformers.items() for m in (side**2, 77))
    work = sd_shapes.network_flops("unet")
    assert work["attention"] == expected
    # the first convolution, by hand: (2, 4, 64, 64) -> 320 channels, 3 x 3, padding 1
    conv_in = sd_shapes.Call("conv2d", "direct", ((2, 4, 64, 64),), ((320, 4, 3, 3), (320,)),
                             (("padding", (1, 1)), ("stride", (1, 1))))
    assert sd_shapes.matrix_flops(conv_in) == 2 * 2 * 320 * 4 * 9 * 64 * 64
    downsample = sd_shapes.Call("conv2d", "direct", ((2, 320, 64, 64),), ((320, 320, 3, 3), (320,)),
                                (("padding", (1, 1)), ("stride", (2, 2))))
    assert sd_shapes.matrix_flops(downsample) == 2 * 2 * 320 * 320 * 9 * 32 * 32
    assert sd_shapes.matrix_flops(sd_shapes.Call("silu", "", ((2, 320, 64, 64),))) == 0
    assert 1.5e12 < sum(work.values()) < 1.7e12  # about 0.8 TFLOP per image, as commonly quoted


def test_merge_joins_the_parts_of_a_run_and_recomputes_the_peer_speeds(bench, tmp_path):
    # two "calls": GroupNorm rows measured with their XLA peer, and a second part whose peer row is
    # 4x faster; the first part listed wins for duplicate rows, the speeds use the merged peers
    csv_path = bench.paths[0]
    header, rows = kernels.read_csv(csv_path)
    assert len(rows) == len(bench.rows) and rows[0]["rel_error"] == bench.rows[0]["rel_error"]
    norm = [r for r in rows if r["op"] == "group_norm+silu"]
    device, day = csv_path.stem.removeprefix("kernels_").rsplit("_", 1)  # "cpu" here, "nvidia-h200" on the GPU
    first = tmp_path / "a" / csv_path.name
    kernels.write_outputs(first.parent, [r for r in norm if r["role"] != "peer"], header, [], ["group_norm"],
                          ["float32"], device, plots=False, day=day)
    faster_peer = [{**r, "device_ms": r["device_ms"] / 4} for r in norm if r["role"] == "peer"]
    second = tmp_path / "b" / csv_path.name
    kernels.write_outputs(second.parent, faster_peer + norm, {**header, "command": "part two"}, [], ["group_norm"],
                          ["float32"], device, plots=False, day=day)
    merged = kernels.merge([first, second], tmp_path / "merged", command="merge test")
    assert len(merged.rows) == len(norm)  # every (op, shape, variant, backend, dtype) once
    (fused,) = [r for r in merged.rows if r["backend"] == "opencl" and r["variant"] == "fused"]
    peers = [r for r in merged.rows if r["role"] == "peer"]  # XLA here; torch too on a GPU
    assert sorted(r["device_ms"] for r in peers) == sorted(r["device_ms"] for r in faster_peer)  # from part two
    best = min(r["device_ms"] for r in peers)
    assert fused["vs_best_peer"] == pytest.approx(best / fused["device_ms"])
    merged_header, _ = kernels.read_csv(merged.paths[0])
    assert merged_header["command"] == "merge test" and "part two" in merged_header["part 2"]
    assert merged.paths[0].name == csv_path.name and merged.paths[2].suffix == ".png"
    with pytest.raises(ValueError, match="kernels_<device>_<YYYY-MM-DD>"):
        kernels.merge([tmp_path / "a" / "renamed.csv"], tmp_path / "merged")
