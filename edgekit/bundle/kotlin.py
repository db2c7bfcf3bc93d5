"""The Android snippet: one Kotlin class that preprocesses a photo, runs a bundle's model and decodes
its output. The runtime that loads and runs the model (LiteRT, ExecuTorch, ONNX Runtime) is the
target's `KotlinRuntime`, declared in its module under targets/; everything else is shared.

Every constant in it is written from model.json; the pixel loop, the int8 (de)quantisation and the
output indexing are chosen from the model's real layout and types, so no branch the model cannot
take is emitted.
"""

from __future__ import annotations

from dataclasses import dataclass

FILE_NAME = "EdgekitModel.kt"


@dataclass(frozen=True)
class KotlinRuntime:
    """What one Android runtime contributes to the snippet. `run` fills the direct, native-order
    ByteBuffer `output` from the ByteBuffer `input` (what preprocess() returns)."""

    setup: tuple[str, ...]  # comment lines: the Gradle dependency, where the model file goes
    imports: tuple[str, ...]
    fields: str  # member declarations, e.g. "private val interpreter: Interpreter"
    load: str  # init-block statements: load MODEL_FILE, check the tensors against the constants
    run: str  # statements that run the model from `input` into `output`
    close: str  # the body of close()
    threads: bool = True  # whether the class takes numThreads (the runtime has such a setting)


def _floats(values) -> str:
    return ", ".join(f"{float(v)!r}f" for v in values)


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)


def _constants(spec: dict) -> list[str]:
    inp, out = spec["input"], spec["output"]
    lines = [
        f'const val MODEL_FILE = "{spec["model_file"]}"',
        f'const val LABELS_FILE = "{spec["labels"]}"',
        f'const val INPUT_NAME = "{inp["name"]}"',
        f"val INPUT_SHAPE = intArrayOf({_ints(inp['shape'])})  // {inp['layout']}, {inp['dtype']}",
        f"const val INPUT_HEIGHT = {inp['height']}",
        f"const val INPUT_WIDTH = {inp['width']}",
        f"val MEAN = floatArrayOf({_floats(inp['normalization']['mean'])})  // RGB, on pixel / 255",
        f"val STD = floatArrayOf({_floats(inp['normalization']['std'])})",
        f'const val OUTPUT_NAME = "{out["name"]}"',
        f"val OUTPUT_SHAPE = intArrayOf({_ints(out['shape'])})  // {out['layout']}, {out['dtype']}",
        f"const val NUM_CLASSES = {spec['classes']}",
    ]
    if spec["task"] == "cls":
        lines.append(f"const val CROP_RATIO = {float(inp['crop_ratio'])!r}f")
    elif spec["task"] == "sr":
        tiling = spec["tiling"]
        lines += [f"const val OUTPUT_HEIGHT = {out['height']}", f"const val OUTPUT_WIDTH = {out['width']}",
                  f"const val SCALE = {tiling['scale']}", f"const val OVERLAP = {tiling['overlap']}  // input pixels"]
    else:
        lines += [f"const val OUTPUT_HEIGHT = {out['height']}", f"const val OUTPUT_WIDTH = {out['width']}"]
    for side, d in (("INPUT", inp), ("OUTPUT", out)):
        if d["quantization"]:
            lines += [f"const val {side}_SCALE = {float(d['quantization']['scale'])!r}f",
                      f"const val {side}_ZERO_POINT = {int(d['quantization']['zero_point'])}"]
    if spec["palette"]:
        flat = [c for rgb in spec["palette"] for c in rgb]
        lines.append(f"/** The {spec['dataset']} colours, R, G, B per class. */")
        lines.append(f"val PALETTE_RGB = intArrayOf({_ints(flat)})")
    return lines


def _crop(spec: dict) -> str:
    if spec["task"] == "sr":
        return """        // One tile of the photo: upscale() cuts any photo into tiles of the input size.
        require(bitmap.width == INPUT_WIDTH && bitmap.height == INPUT_HEIGHT) { "a tile is ${INPUT_WIDTH}x${INPUT_HEIGHT}" }
        val image = bitmap"""
    if spec["task"] == "seg":
        return """        // The model was verified on the whole photo stretched to the input size.
        val image = Bitmap.createScaledBitmap(bitmap, INPUT_WIDTH, INPUT_HEIGHT, true)"""
    return """        // Centre crop (CROP_RATIO of the short side, the input's aspect), then resize: ImageNet evaluation.
        // Android's filter is bilinear; edgekit's reference resize is bicubic (a small difference).
        val side = minOf(bitmap.width, bitmap.height) * CROP_RATIO / maxOf(INPUT_WIDTH, INPUT_HEIGHT)
        val cropW = (INPUT_WIDTH * side).roundToInt().coerceIn(1, bitmap.width)
        val cropH = (INPUT_HEIGHT * side).roundToInt().coerceIn(1, bitmap.height)
        val cropped = Bitmap.createBitmap(bitmap, (bitmap.width - cropW) / 2, (bitmap.height - cropH) / 2, cropW, cropH)
        val image = Bitmap.createScaledBitmap(cropped, INPUT_WIDTH, INPUT_HEIGHT, true)"""


def _pixels(spec: dict) -> str:
    nhwc = spec["input"]["layout"] == "NHWC"
    if nhwc:
        return """        for (p in pixels) {  // NHWC: R, G, B of each pixel in turn
            put(input, 0, (p shr 16) and 0xFF)
            put(input, 1, (p shr 8) and 0xFF)
            put(input, 2, p and 0xFF)
        }"""
    return """        for (c in 0 until 3) {  // NCHW: all of R, then G, then B
            val shift = 16 - 8 * c
            for (p in pixels) put(input, c, (p shr shift) and 0xFF)
        }"""


def _put(spec: dict) -> str:
    if spec["input"]["quantization"]:
        return """    private fun put(buffer: ByteBuffer, channel: Int, value: Int) {
        val x = (value / 255f - MEAN[channel]) / STD[channel]
        buffer.put((x / INPUT_SCALE + INPUT_ZERO_POINT).roundToInt().coerceIn(-128, 127).toByte())  // int8 input
    }"""
    return """    private fun put(buffer: ByteBuffer, channel: Int, value: Int) {
        buffer.putFloat((value / 255f - MEAN[channel]) / STD[channel])
    }"""


def _indent(code: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line.strip() else "" for line in code.strip("\n").splitlines())


def _read_output(spec: dict, runtime: KotlinRuntime) -> str:
    run = _indent(runtime.run, 8)
    if spec["output"]["quantization"]:
        return f"""    /** Runs the model; the output as float logits (dequantised from int8). */
    fun logits(bitmap: Bitmap): FloatArray {{
        val input = preprocess(bitmap)
        val output = ByteBuffer.allocateDirect(OUTPUT_SHAPE.reduce(Int::times)).order(ByteOrder.nativeOrder())
{run}
        output.rewind()
        return FloatArray(output.capacity()) {{ (output.get().toInt() - OUTPUT_ZERO_POINT) * OUTPUT_SCALE }}
    }}"""
    return f"""    /** Runs the model; the output logits. */
    fun logits(bitmap: Bitmap): FloatArray {{
        val input = preprocess(bitmap)
        val output = ByteBuffer.allocateDirect(OUTPUT_SHAPE.reduce(Int::times) * 4).order(ByteOrder.nativeOrder())
{run}
        output.rewind()
        return FloatArray(output.capacity() / 4).also {{ output.asFloatBuffer().get(it) }}
    }}"""


def _upscale(spec: dict) -> str:
    """Tiles as edgekit.tiling makes them: starts overlapping by OVERLAP, edge pixels repeated past the photo,
    each tile's output weighted by linear ramps across its overlaps, the sums divided by the weights."""
    value = "z[(y * OUTPUT_WIDTH + x) * 3 + c]" if spec["output"]["layout"] == "NHWC" else \
        "z[c * OUTPUT_HEIGHT * OUTPUT_WIDTH + y * OUTPUT_WIDTH + x]"
    return f"""    /** Tile starts covering `length`, overlapping by at least OVERLAP, the last flush with the end. */
    private fun starts(length: Int, tile: Int): List<Int> {{
        if (length <= tile) return listOf(0)
        return (0 until length - tile step maxOf(1, tile - OVERLAP)).toList() + (length - tile)
    }}

    /** 1 inside; a linear ramp over the first `rise` and the last `fall` samples (never 0). */
    private fun ramp(n: Int, rise: Int, fall: Int) = FloatArray(n) {{ i ->
        var w = if (i < rise) (i + 1f) / (rise + 1) else 1f
        if (i >= n - fall) w = minOf(w, (n - i).toFloat() / (fall + 1))
        w
    }}

    /** The photo upscaled SCALE x, any size: run in overlapping tiles blended with linear ramps. */
    fun upscale(bitmap: Bitmap): Bitmap {{
        val w = bitmap.width
        val h = bitmap.height
        val src = IntArray(w * h).also {{ bitmap.getPixels(it, 0, w, 0, 0, w, h) }}
        val ys = starts(maxOf(h, INPUT_HEIGHT), INPUT_HEIGHT)
        val xs = starts(maxOf(w, INPUT_WIDTH), INPUT_WIDTH)
        val ow = maxOf(w, INPUT_WIDTH) * SCALE
        val plane = ow * maxOf(h, INPUT_HEIGHT) * SCALE
        val sum = FloatArray(3 * plane)
        val weight = FloatArray(plane)
        val tile = IntArray(INPUT_WIDTH * INPUT_HEIGHT)
        for ((i, y0) in ys.withIndex()) for ((j, x0) in xs.withIndex()) {{
            for (y in 0 until INPUT_HEIGHT) for (x in 0 until INPUT_WIDTH) {{  // past the photo: its edge pixels
                tile[y * INPUT_WIDTH + x] = src[minOf(y0 + y, h - 1) * w + minOf(x0 + x, w - 1)]
            }}
            val z = logits(Bitmap.createBitmap(tile, INPUT_WIDTH, INPUT_HEIGHT, Bitmap.Config.ARGB_8888))
            val ry = ramp(OUTPUT_HEIGHT, if (i > 0) (ys[i - 1] + INPUT_HEIGHT - y0) * SCALE else 0,
                          if (i + 1 < ys.size) (y0 + INPUT_HEIGHT - ys[i + 1]) * SCALE else 0)
            val rx = ramp(OUTPUT_WIDTH, if (j > 0) (xs[j - 1] + INPUT_WIDTH - x0) * SCALE else 0,
                          if (j + 1 < xs.size) (x0 + INPUT_WIDTH - xs[j + 1]) * SCALE else 0)
            for (y in 0 until OUTPUT_HEIGHT) for (x in 0 until OUTPUT_WIDTH) {{
                val o = (y0 * SCALE + y) * ow + x0 * SCALE + x
                val wt = ry[y] * rx[x]
                weight[o] += wt
                for (c in 0 until 3) sum[c * plane + o] += wt * {value}
            }}
        }}
        val argb = IntArray(w * SCALE * h * SCALE) {{ k ->
            val o = k / (w * SCALE) * ow + k % (w * SCALE)
            val rgb = IntArray(3) {{ c -> (sum[c * plane + o] / weight[o] * 255f).roundToInt().coerceIn(0, 255) }}
            (0xFF shl 24) or (rgb[0] shl 16) or (rgb[1] shl 8) or rgb[2]
        }}
        return Bitmap.createBitmap(argb, w * SCALE, h * SCALE, Bitmap.Config.ARGB_8888)
    }}"""


def _decode(spec: dict) -> str:
    if spec["task"] == "sr":
        return _upscale(spec)
    if spec["task"] == "cls":
        return """    /** The topK classes with their softmax probabilities. */
    fun classify(bitmap: Bitmap, topK: Int = 5): List<Pair<String, Float>> {
        val z = logits(bitmap)
        val max = z.fold(Float.NEGATIVE_INFINITY) { a, b -> maxOf(a, b) }
        val e = FloatArray(z.size) { exp(z[it] - max) }
        val sum = e.sum()
        return e.indices.sortedByDescending { e[it] }.take(topK).map { labels[it] to e[it] / sum }
    }"""
    nhwc = spec["output"]["layout"] == "NHWC"

    def logit(k: str) -> str:
        return f"z[i * NUM_CLASSES + {k}]" if nhwc else f"z[{k} * (OUTPUT_HEIGHT * OUTPUT_WIDTH) + i]"

    return f"""    /** The class of each output pixel, row-major OUTPUT_HEIGHT x OUTPUT_WIDTH (1/{spec['output']['stride']} of the input). */
    fun segment(bitmap: Bitmap): IntArray {{
        val z = logits(bitmap)  // {spec['output']['layout']}
        return IntArray(OUTPUT_HEIGHT * OUTPUT_WIDTH) {{ i ->
            var best = 0
            for (c in 1 until NUM_CLASSES) if ({logit("c")} > {logit("best")}) best = c
            best
        }}
    }}

    /** A class map as an ARGB Bitmap in the dataset's colours (scale it up to overlay the photo). */
    fun colorize(classes: IntArray): Bitmap {{
        val argb = IntArray(classes.size) {{
            val k = classes[it] * 3
            (0xFF shl 24) or (PALETTE_RGB[k] shl 16) or (PALETTE_RGB[k + 1] shl 8) or PALETTE_RGB[k + 2]
        }}
        return Bitmap.createBitmap(argb, OUTPUT_WIDTH, OUTPUT_HEIGHT, Bitmap.Config.ARGB_8888)
    }}"""


def snippet(spec: dict, runtime: KotlinRuntime) -> str:
    inp = spec["input"]
    bytes_per = 1 if inp["quantization"] else 4
    constants = "\n".join(f"        {line}" for line in _constants(spec))
    warning = "".join(f"\n// WARNING: {w}" for w in spec["warnings"])
    imports = ["android.content.Context", "android.graphics.Bitmap", *runtime.imports, "java.nio.ByteBuffer",
               "java.nio.ByteOrder"]
    imports += ["kotlin.math.exp"] if spec["task"] == "cls" else []
    imports += ["kotlin.math.roundToInt"] if inp["quantization"] or spec["task"] in ("cls", "sr") else []
    import_lines = "\n".join(f"import {i}" for i in dict.fromkeys(imports))
    setup = "\n".join(f"// {line}" for line in runtime.setup)
    return f"""// Generated by {spec['generated_by']} from {spec['artifact']} ({spec['variant']}, {spec['precision']}).
// Regenerate with `edgekit package` instead of editing: every constant comes from model.json.{warning}
//
{setup}
package ai.edgekit.model

{import_lines}

class EdgekitModel(context: Context{", numThreads: Int = 4" if runtime.threads else ""}) : AutoCloseable {{
    companion object {{
{constants}
    }}

{_indent(runtime.fields, 4)}
    val labels: List<String>

    init {{
{_indent(runtime.load, 8)}
        labels = context.assets.open(LABELS_FILE).bufferedReader().readLines()
    }}

    /** A photo as the model's input: {inp['preprocessing']}; (pixel / 255 - MEAN) / STD. */
    fun preprocess(bitmap: Bitmap): ByteBuffer {{
{_crop(spec)}
        val pixels = IntArray(INPUT_WIDTH * INPUT_HEIGHT)
        image.getPixels(pixels, 0, INPUT_WIDTH, 0, 0, INPUT_WIDTH, INPUT_HEIGHT)
        val input = ByteBuffer.allocateDirect(pixels.size * 3 * {bytes_per}).order(ByteOrder.nativeOrder())
{_pixels(spec)}
        input.rewind()
        return input
    }}

{_put(spec)}

{_read_output(spec, runtime)}

{_decode(spec)}

    override fun close() {{
{_indent(runtime.close, 8)}
    }}
}}
"""
