"""The Android snippet: one Kotlin class that runs a bundle's model.tflite with LiteRT's Interpreter.

Every constant in it is written from model.json; the pixel loop, the int8 (de)quantisation and the
output indexing are chosen from the model's real layout and types, so no branch the model cannot
take is emitted.
"""

from __future__ import annotations

LITERT_MAVEN = "com.google.ai.edge.litert:litert:1.4.1"  # the Interpreter API line (minSdk 21)
FILE_NAME = "EdgekitModel.kt"


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


def _read_output(spec: dict) -> str:
    if spec["output"]["quantization"]:
        return """    /** Runs the model; the output as float logits (dequantised from int8). */
    fun logits(bitmap: Bitmap): FloatArray {
        val output = ByteBuffer.allocateDirect(OUTPUT_SHAPE.reduce(Int::times)).order(ByteOrder.nativeOrder())
        interpreter.run(preprocess(bitmap), output)
        output.rewind()
        return FloatArray(output.capacity()) { (output.get().toInt() - OUTPUT_ZERO_POINT) * OUTPUT_SCALE }
    }"""
    return """    /** Runs the model; the output logits. */
    fun logits(bitmap: Bitmap): FloatArray {
        val output = ByteBuffer.allocateDirect(OUTPUT_SHAPE.reduce(Int::times) * 4).order(ByteOrder.nativeOrder())
        interpreter.run(preprocess(bitmap), output)
        output.rewind()
        return FloatArray(output.capacity() / 4).also { output.asFloatBuffer().get(it) }
    }"""


def _decode(spec: dict) -> str:
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


def snippet(spec: dict) -> str:
    inp = spec["input"]
    bytes_per = 1 if inp["quantization"] else 4
    constants = "\n".join(f"        {line}" for line in _constants(spec))
    warning = f"\n// WARNING: {spec['warning']}" if spec["warning"] else ""
    imports = ["android.content.Context", "android.graphics.Bitmap", "org.tensorflow.lite.Interpreter",
               "java.io.FileInputStream", "java.nio.ByteBuffer", "java.nio.ByteOrder", "java.nio.channels.FileChannel"]
    imports += ["kotlin.math.exp"] if spec["task"] == "cls" else []
    imports += ["kotlin.math.roundToInt"] if inp["quantization"] or spec["task"] == "cls" else []
    import_lines = "\n".join(f"import {i}" for i in imports)
    return f"""// Generated by {spec['generated_by']} from {spec['artifact']} ({spec['variant']}, {spec['precision']}).
// Regenerate with `edgekit package` instead of editing: every constant comes from model.json.{warning}
//
// Gradle: implementation("{LITERT_MAVEN}")
// Copy {spec['model_file']} and {spec['labels']} into src/main/assets/ and keep the model uncompressed
// so it can be memory-mapped: android {{ androidResources {{ noCompress += "tflite" }} }}
package ai.edgekit.model

{import_lines}

class EdgekitModel(context: Context, numThreads: Int = 4) : AutoCloseable {{
    companion object {{
{constants}
    }}

    private val interpreter: Interpreter
    val labels: List<String>

    init {{
        val fd = context.assets.openFd(MODEL_FILE)
        val model = FileInputStream(fd.fileDescriptor).channel
            .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(numThreads))
        labels = context.assets.open(LABELS_FILE).bufferedReader().readLines()
        val input = interpreter.getInputTensor(0)
        val output = interpreter.getOutputTensor(0)
        check(input.name() == INPUT_NAME && input.shape().contentEquals(INPUT_SHAPE) &&
            output.name() == OUTPUT_NAME && output.shape().contentEquals(OUTPUT_SHAPE)) {{
            "$MODEL_FILE is not the model this class was generated for"
        }}
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

{_read_output(spec)}

{_decode(spec)}

    override fun close() = interpreter.close()
}}
"""
