package ai.onnxruntime;

import java.io.File;

/** The snippet's view of ONNX Runtime's environment (ai.onnxruntime: onnxruntime-android and
 * onnxruntime-android-qnn). */
public class OrtEnvironment {
    private static final OrtEnvironment INSTANCE = new OrtEnvironment();

    public static OrtEnvironment getEnvironment() { return INSTANCE; }

    public OrtSession createSession(String modelPath, OrtSession.SessionOptions options) {
        File model = new File(modelPath);
        File[] binaries = model.getParentFile().listFiles((dir, name) -> name.endsWith("_qnn.bin"));
        if (!model.isFile() || binaries == null || binaries.length == 0) {
            throw new IllegalArgumentException("an EPContext model needs its context binary next to it: " + modelPath);
        }
        if (!"libQnnHtp.so".equals(options.qnn.get("backend_path"))) {
            throw new IllegalArgumentException("no QNN HTP backend in the session options");
        }
        return new OrtSession();
    }

    /** A model read from the app's assets (the ONNX target's CPU session: no QNN EP asked for). */
    public OrtSession createSession(byte[] model, OrtSession.SessionOptions options) {
        if (model.length < 16 || model[0] != 0x08) {  // an ONNX ModelProto starts with field 1 (ir_version)
            throw new IllegalArgumentException("not an ONNX model: " + model.length + " bytes");
        }
        if (!options.qnn.isEmpty()) {
            throw new IllegalArgumentException("the ONNX target's model runs on the CPU EP, not QNN");
        }
        return new OrtSession();
    }
}
