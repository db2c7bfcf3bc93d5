package org.pytorch.executorch;

import java.io.File;
import java.nio.FloatBuffer;
import edgekit.stub.StubModel;

/** The snippet's view of ExecuTorch's Module: load() checks the .pte is there; forward() answers
 * with what executorch.runtime computed in the test (see StubModel). */
public class Module {
    private Module() {}

    public static Module load(String path) {
        File file = new File(path);
        if (!file.isFile() || file.length() < 8) {
            throw new IllegalArgumentException("cannot load " + path);
        }
        return new Module();
    }

    public EValue[] forward(EValue... inputs) {
        Tensor input = inputs[0].toTensor();
        if (!java.util.Arrays.equals(input.shape(), StubModel.shape(1))) {
            throw new IllegalArgumentException("input shape " + java.util.Arrays.toString(input.shape()));
        }
        float[] out = StubModel.run(input.data);
        return new EValue[] {EValue.from(Tensor.fromBlob(FloatBuffer.wrap(out), StubModel.shape(3)))};
    }

    public void destroy() {}
}
