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


def _entry_point(spec: dict, image_input: bool) -> str:
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
