package ai.onnxruntime;

import java.nio.FloatBuffer;

public class OnnxTensor implements OnnxValue {
    final FloatBuffer data;
    final long[] shape;

    OnnxTensor(FloatBuffer data, long[] shape) {
        this.data = data;
        this.shape = shape.clone();
    }

    public static OnnxTensor createTensor(OrtEnvironment env, FloatBuffer data, long[] shape) {
        return new OnnxTensor(data, shape);
    }

    public FloatBuffer getFloatBuffer() {
        FloatBuffer copy = data.duplicate();
        copy.rewind();
        return copy;
    }

    @Override
    public void close() {}
}
