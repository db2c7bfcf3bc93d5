package org.pytorch.executorch;

import java.nio.FloatBuffer;

/** The snippet's view of ExecuTorch's Tensor (org.pytorch.executorch, executorch-android). */
public class Tensor {
    final FloatBuffer data;
    private final long[] shape;

    private Tensor(FloatBuffer data, long[] shape) {
        long n = 1;
        for (long d : shape) n *= d;
        if (data.capacity() != n) {
            throw new IllegalArgumentException("buffer holds " + data.capacity() + " floats, the shape " + n);
        }
        this.data = data;
        this.shape = shape.clone();
    }

    public static Tensor fromBlob(FloatBuffer data, long[] shape) { return new Tensor(data, shape); }
    public static Tensor fromBlob(float[] data, long[] shape) { return new Tensor(FloatBuffer.wrap(data), shape); }
    public long[] shape() { return shape.clone(); }

    public float[] getDataAsFloatArray() {
        float[] out = new float[data.capacity()];
        FloatBuffer copy = data.duplicate();
        copy.rewind();
        copy.get(out);
        return out;
    }
}
