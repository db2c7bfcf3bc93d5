"""The iOS snippet: one Swift file that runs a bundle's model.mlpackage with Core ML (and Vision for
image inputs). Constants are written from model.json; only the paths the model can take are emitted
(image or tensor input, classifier or segmentation output)."""

from __future__ import annotations

FILE_NAME = "EdgekitModel.swift"


def _floats(values) -> str:
    return ", ".join(repr(float(v)) for v in values)


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)


def _constants(spec: dict, image_input: bool) -> list[str]:
    inp, out = spec["input"], spec["output"]
    where = "applied inside the model (image input); for reference" if image_input else "applied by input(_:)"
    lines = [
        f'static let modelName = "{spec["model_file"].rsplit(".", 1)[0]}"  // Xcode compiles {spec["model_file"]} '
        f'to this .mlmodelc',
        f'static let inputName = "{inp["name"]}"',
        f"static let inputShape = [{_ints(inp['shape'])}]  // NCHW, {inp['dtype']}",
        f"static let inputHeight = {inp['height']}",
        f"static let inputWidth = {inp['width']}",
        f"static let mean: [Float] = [{_floats(inp['normalization']['mean'])}]  // RGB on pixel / 255, {where}",
        f"static let std: [Float] = [{_floats(inp['normalization']['std'])}]",
        f'static let outputName = "{out["name"]}"',
        f"static let numClasses = {spec['classes']}",
    ]
    if spec["task"] == "cls":
        lines += [f'static let scoresName = "{out["scores"]}"  // label -> logit',
                  f"static let cropRatio = {float(inp['crop_ratio'])!r}"]
    elif spec["task"] == "sr":
        tiling = spec["tiling"]
        lines += [f"static let outputShape = [{_ints(out['shape'])}]  // NCHW, {out['dtype']}",
                  f"static let scale = {tiling['scale']}",
                  f"static let overlap = {tiling['overlap']}  // input pixels shared by neighbouring tiles"]
    else:
        lines += [f"static let outputShape = [{_ints(out['shape'])}]  // NCHW, {out['dtype']}",
                  f"static let outputHeight = {out['height']}",
                  f"static let outputWidth = {out['width']}",
                  f"/// The {spec['dataset']} colours, [R, G, B] per class.",
                  "static let palette: [[UInt8]] = [" + ", ".join(f"[{_ints(c)}]" for c in spec["palette"]) + "]"]
    return lines


_CROP = """
    /// ImageNet evaluation: a centre crop (cropRatio of the short side, the input's aspect), then the resize.
    static func centreCrop(_ image: CGImage) -> CGImage {
        let side = CGFloat(min(image.width, image.height)) * CGFloat(Info.cropRatio)
            / CGFloat(max(Info.inputWidth, Info.inputHeight))
        let w = (CGFloat(Info.inputWidth) * side).rounded(), h = (CGFloat(Info.inputHeight) * side).rounded()
        let rect = CGRect(x: ((CGFloat(image.width) - w) / 2).rounded(.down),
                          y: ((CGFloat(image.height) - h) / 2).rounded(.down), width: w, height: h)
        return image.cropping(to: rect) ?? image
    }
"""

_TENSOR_INPUT = """
    /// The model's input tensor: the image resized to inputWidth x inputHeight, (pixel / 255 - mean) / std.
    static func input(_ image: CGImage) throws -> MLMultiArray {
        let w = Info.inputWidth, h = Info.inputHeight
        var rgba = [UInt8](repeating: 0, count: w * h * 4)
        rgba.withUnsafeMutableBytes { buffer in
            let context = CGContext(data: buffer.baseAddress, width: w, height: h, bitsPerComponent: 8,
                                    bytesPerRow: w * 4, space: CGColorSpaceCreateDeviceRGB(),
                                    bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!
            context.interpolationQuality = .high
            context.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        }
        let array = try MLMultiArray(shape: Info.inputShape.map { NSNumber(value: $0) }, dataType: .float32)
        let p = array.dataPointer.bindMemory(to: Float.self, capacity: 3 * w * h)
        for c in 0..<3 {
            for i in 0..<(w * h) {
                p[c * w * h + i] = (Float(rgba[i * 4 + c]) / 255 - Info.mean[c]) / Info.std[c]
            }
        }
        return array
    }

    private func predict(_ image: CGImage) throws -> MLFeatureProvider {
        let features = try MLDictionaryFeatureProvider(
            dictionary: [Info.inputName: MLFeatureValue(multiArray: Self.input(image))])
        return try model.prediction(from: features)
    }
"""

_VISION = """
    private func observe(_ image: CGImage) throws -> [VNObservation] {
        let request = VNCoreMLRequest(model: vision)
        request.imageCropAndScaleOption = .scaleFill  // the crop (if any) is done before, as verified
        try VNImageRequestHandler(cgImage: image).perform([request])
        return request.results ?? []
    }
"""

_ARGMAX = """
    /// The class of each output pixel, row-major outputHeight x outputWidth.
    static func argmax(_ logits: MLMultiArray) -> [Int32] {
        let h = Info.outputHeight, w = Info.outputWidth
        var classes = [Int32](repeating: 0, count: h * w)
        for y in 0..<h {
            for x in 0..<w {
                var best = 0, bestValue = -Float.infinity
                for c in 0..<Info.numClasses {
                    // subscripting by index honours the array's strides and converts float16 to Float
                    let v = logits[[0, c, y, x].map { NSNumber(value: $0) }].floatValue
                    if v > bestValue { best = c; bestValue = v }
                }
                classes[y * w + x] = Int32(best)
            }
        }
        return classes
    }
"""


_PIXELS = """
    /// RGBA bytes of an image, drawn at its own size.
    static func rgba(_ image: CGImage) -> [UInt8] {
        let w = image.width, h = image.height
        var bytes = [UInt8](repeating: 255, count: w * h * 4)
        bytes.withUnsafeMutableBytes { buffer in
            let context = CGContext(data: buffer.baseAddress, width: w, height: h, bitsPerComponent: 8,
                                    bytesPerRow: w * 4, space: CGColorSpaceCreateDeviceRGB(),
                                    bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!
            context.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        }
        return bytes
    }

    /// An image of RGBA bytes.
    static func image(_ rgba: [UInt8], width: Int, height: Int) -> CGImage {
        var bytes = rgba
        return bytes.withUnsafeMutableBytes { buffer in
            CGContext(data: buffer.baseAddress, width: width, height: height, bitsPerComponent: 8,
                      bytesPerRow: width * 4, space: CGColorSpaceCreateDeviceRGB(),
                      bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!.makeImage()!
        }
    }
"""

_UPSCALE = """
    /// Tile starts covering `length`, overlapping by at least `overlap`, the last flush with the end.
    static func starts(_ length: Int, _ tile: Int) -> [Int] {
        if length <= tile { return [0] }
        return Array(stride(from: 0, to: length - tile, by: max(1, tile - Info.overlap))) + [length - tile]
    }

    /// 1 inside; a linear ramp over the first `rise` and the last `fall` samples (never 0).
    static func ramp(_ n: Int, rise: Int, fall: Int) -> [Float] {
        (0..<n).map { i in
            var w: Float = i < rise ? Float(i + 1) / Float(rise + 1) : 1
            if i >= n - fall { w = min(w, Float(n - i) / Float(fall + 1)) }
            return w
        }
    }

    /// The photo upscaled `scale` x, any size: run in overlapping tiles blended with linear ramps
    /// (past the photo's edge, its edge pixels repeat), as edgekit verified it.
    func upscale(_ photo: CGImage) throws -> CGImage {
        let w = photo.width, h = photo.height, th = Info.inputHeight, tw = Info.inputWidth, s = Info.scale
        let src = Self.rgba(photo)
        let ys = Self.starts(max(h, th), th), xs = Self.starts(max(w, tw), tw)
        let ow = max(w, tw) * s, plane = ow * max(h, th) * s
        var sum = [Float](repeating: 0, count: 3 * plane), weight = [Float](repeating: 0, count: plane)
        var tile = [UInt8](repeating: 255, count: tw * th * 4)
        for (i, y0) in ys.enumerated() {
            for (j, x0) in xs.enumerated() {
                for y in 0..<th {
                    for x in 0..<tw {
                        let from = (min(y0 + y, h - 1) * w + min(x0 + x, w - 1)) * 4
                        for c in 0..<4 { tile[(y * tw + x) * 4 + c] = src[from + c] }
                    }
                }
                guard let out = try output(Self.image(tile, width: tw, height: th)) else {
                    throw EdgekitModelError.noOutput(Info.outputName)
                }
                let ry = Self.ramp(th * s, rise: i > 0 ? (ys[i - 1] + th - y0) * s : 0,
                                   fall: i + 1 < ys.count ? (y0 + th - ys[i + 1]) * s : 0)
                let rx = Self.ramp(tw * s, rise: j > 0 ? (xs[j - 1] + tw - x0) * s : 0,
                                   fall: j + 1 < xs.count ? (x0 + tw - xs[j + 1]) * s : 0)
                for y in 0..<(th * s) {
                    for x in 0..<(tw * s) {
                        let o = (y0 * s + y) * ow + x0 * s + x, wt = ry[y] * rx[x]
                        weight[o] += wt
                        for c in 0..<3 {
                            // subscripting by index honours the array's strides and converts float16 to Float
                            sum[c * plane + o] += wt * out[[0, c, y, x].map { NSNumber(value: $0) }].floatValue
                        }
                    }
                }
            }
        }
        var rgba = [UInt8](repeating: 255, count: w * s * h * s * 4)
        for y in 0..<(h * s) {
            for x in 0..<(w * s) {
                let o = y * ow + x
                for c in 0..<3 {
                    rgba[(y * w * s + x) * 4 + c] = UInt8(max(0, min(255, (sum[c * plane + o] / weight[o] * 255).rounded())))
                }
            }
        }
        return Self.image(rgba, width: w * s, height: h * s)
    }
"""


def _entry_point(spec: dict, image_input: bool) -> str:
    if spec["task"] == "sr":
        get = ("(try observe(tile).first as? VNCoreMLFeatureValueObservation)?.featureValue.multiArrayValue"
               if image_input else "try predict(tile).featureValue(for: Info.outputName)?.multiArrayValue")
        return f"""
    /// The model's output for one inputWidth x inputHeight tile: RGB in [0, 1] at `scale` x, NCHW.
    func output(_ tile: CGImage) throws -> MLMultiArray? {{
        {get}
    }}
""" + _PIXELS + _UPSCALE
    if spec["task"] == "cls":
        if image_input:
            return """
    /// The topK classes with their scores (logits: the model has no softmax; they rank, they are not probabilities).
    func classify(_ image: CGImage, topK: Int = 5) throws -> [(label: String, score: Float)] {
        let results = try observe(Self.centreCrop(image)).compactMap { $0 as? VNClassificationObservation }
        return results.sorted { $0.confidence > $1.confidence }.prefix(topK).map { ($0.identifier, $0.confidence) }
    }
"""
        return """
    /// The topK classes with their scores (logits: the model has no softmax; they rank, they are not probabilities).
    func classify(_ image: CGImage, topK: Int = 5) throws -> [(label: String, score: Float)] {
        let out = try predict(Self.centreCrop(image))
        guard let scores = out.featureValue(for: Info.scoresName)?.dictionaryValue as? [String: NSNumber] else {
            throw EdgekitModelError.noOutput(Info.scoresName)
        }
        return scores.map { ($0.key, $0.value.floatValue) }.sorted { $0.1 > $1.1 }.prefix(topK).map { ($0.0, $0.1) }
    }
"""
    get = ("(try observe(image).first as? VNCoreMLFeatureValueObservation)?.featureValue.multiArrayValue"
           if image_input else "try predict(image).featureValue(for: Info.outputName)?.multiArrayValue")
    return f"""
    /// Segments the whole photo (stretched to the input size): a class per output pixel (1/{spec['output']['stride']} of the input).
    func segment(_ image: CGImage) throws -> [Int32] {{
        guard let logits = {get} else {{
            throw EdgekitModelError.noOutput(Info.outputName)
        }}
        return Self.argmax(logits)
    }}
"""


def snippet(spec: dict, image_input: bool) -> str:
    constants = "\n".join(f"    {line}" for line in _constants(spec, image_input))
    warning = "".join(f"\n// WARNING: {w}" for w in spec["warnings"])
    vision_import = "import Vision\n" if image_input else ""
    vision_member = "    private let vision: VNCoreMLModel\n" if image_input else ""
    vision_init = "        vision = try VNCoreMLModel(for: model)\n" if image_input else ""
    body = (_CROP if spec["task"] == "cls" else "") + (_VISION if image_input else _TENSOR_INPUT)
    body += _entry_point(spec, image_input) + (_ARGMAX if spec["task"] == "seg" else "")
    return f"""// Generated by {spec['generated_by']} from {spec['artifact']} ({spec['variant']}, {spec['precision']}).
// Regenerate with `edgekit package` instead of editing: every constant comes from model.json.{warning}
//
// Add {spec['model_file']} and {spec['labels']} to the app target; Xcode compiles the package into
// {spec['model_file'].rsplit('.', 1)[0]}.mlmodelc inside the app bundle.
import CoreGraphics
import CoreML
import Foundation
{vision_import}
/// The facts of {spec['model_file']}, written from model.json.
enum EdgekitModelInfo {{
{constants}
}}

enum EdgekitModelError: Error {{
    case missingResource(String)
    case noOutput(String)
}}

final class EdgekitModel {{
    typealias Info = EdgekitModelInfo
    let model: MLModel
{vision_member}    let labels: [String]

    init(configuration: MLModelConfiguration = MLModelConfiguration()) throws {{
        guard let url = Bundle.main.url(forResource: Info.modelName, withExtension: "mlmodelc") else {{
            throw EdgekitModelError.missingResource("\\(Info.modelName).mlmodelc")
        }}
        guard let labelsURL = Bundle.main.url(forResource: "labels", withExtension: "txt") else {{
            throw EdgekitModelError.missingResource("labels.txt")
        }}
        model = try MLModel(contentsOf: url, configuration: configuration)
{vision_init}        labels = try String(contentsOf: labelsURL, encoding: .utf8).split(separator: "\\n").map(String.init)
    }}
{body}}}
"""
